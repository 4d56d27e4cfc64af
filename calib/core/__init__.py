"""The data model and contracts every layer shares: plans, targets, failures, results, and the
routine interface. Imports nothing of calib above it."""
