"""The HTTP routes, one module per resource; each translates HTTP to the floors below and back."""
