"""Running an experiment: configuration, building the components, logging, checkpoints."""
