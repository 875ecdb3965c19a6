"""The sweep layer: Ray Tune trials of whole continual sequences, searched by Optuna, tracked in
MLflow. The only package that imports ray; importing this package itself imports nothing heavy.

- schema.py     the sweep file's schema and checks, loading with --set (no ray/optuna/torch)
- space.py      the search space: conditions, order, grid, Optuna define-by-run (Optuna lazily)
- layout.py     where a sweep writes (output_dir, per-trial folders) and absolute paths
- searcher.py   the Optuna searcher, replicated over seeds (SeedReplicator)
- context.py    what every trial gets from the driver (torch-free)
- entry.py      the function Tune runs per trial; imports trainable.py in the worker only
- trainable.py  one trial = run_sequence with a reporter that calls tune.report
- tracking.py   MLflow: parent run per sweep, nested run per trial (MlflowClient)
- tuner.py      Tuner, scheduler, resources, failure handling, resume; writes the trial
                records (cl_sweeps/records.py) and ends with the frontier's summary
"""
