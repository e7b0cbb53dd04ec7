"""Running a job: callbacks, loggers, interruption and resumption, multi-process and sharding."""
