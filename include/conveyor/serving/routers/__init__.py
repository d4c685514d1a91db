"""HTTP routes of the model service, one module per resource."""
