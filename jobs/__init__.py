"""GovLake Spark jobs.

Every job is a pure transform ``DataFrame -> DataFrame`` that receives the SparkSession it
needs; I/O happens only in each module's entry point (``main``), which also runs under
``spark-submit``. Modules:

- :mod:`jobs.config`    settings (lakehouse root, Spark master, sources mode) from the environment
- :mod:`jobs.spark`     the one SparkSession factory (Delta, time zone, cached jars)
- :mod:`jobs.codes`     China code pack: GB 11643 ID numbers, GB/T 2260/2261.1/3304 codes, dates
- :mod:`jobs.udf`       GovLake's own Spark SQL functions in Java (the GB 11643 checks), built and registered
- :mod:`jobs.sources`   the source registry (``schemas/sources/*.yaml``) and readers
- :mod:`jobs.raw`       raw layer: lineage columns, write-once batches, exchange ledger
- :mod:`jobs.quality`   expectation suites, row-level quarantine, GX checkpoint and Data Docs
- :mod:`jobs.unified`   unified layer: standardised persons (MERGE on ID number) and events
- :mod:`jobs.marts`     topic marts and analysis tables
- :mod:`jobs.pipeline`  the main job: all stages for one logical date, and the summary
"""
