"""Privacy: erasing a user everywhere, in bounded steps, with nothing left behind."""
