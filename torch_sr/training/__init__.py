"""Training: one loop for both ESRGAN stages, composed from a config's networks, losses and data.

`run.train(cfg, options)` runs the stages (`stages.py`) through `loop.train_stage`; a stage's
networks, optimisers and progress are a `state.TrainState`, its losses an `objective.Objective`,
and `session.Session` does what surrounds the iterations (logs, validation, files). Everything a
week-long run needs lives in its own module: checkpoints that resume exactly (`checkpointing.py`,
`resume.py`, `rng.py`, the counter-based data order of `sampler.py` / `data.py`), EMA (`ema.py`),
torchrun/DDP/DataParallel (`distributed.py`), logs (`logging.py`), validation (`validation.py`),
signals (`signals.py`) and partial weight loading between stages (`transfer.py`).
"""
