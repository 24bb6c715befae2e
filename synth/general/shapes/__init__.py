"""The shapes of the general family: one module each, defining SHAPE (a `base.Shape`)."""
