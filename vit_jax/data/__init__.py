"""Data: sources of examples (TFDS, image folders, captions) and the tf.data
pipeline that makes batches."""
