"""Distillation: the typed config schema, on-the-fly triples and their cache, losses and augmentation, pruned
initialisation, the LightningModule, DDP and the run that wires them from a Hydra config."""
