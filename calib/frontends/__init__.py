"""Target front-ends: targets from NIR graphs (`nir`) and from PyNN-style model units
(`model_units`)."""
