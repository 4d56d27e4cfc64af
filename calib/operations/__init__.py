"""Operations over many calibrations: nightly fleets on Dask (`fleet`), mismatch studies
(`study`) and night-over-night comparison (`compare`)."""
