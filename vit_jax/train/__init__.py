"""Training: the loop, its tasks, the jitted steps, the optimizer and the
devices it runs on."""
