"""Studies: sweeps of runs on Ray (`studies.sweep`) and reports that compare them (`studies.report`)."""
