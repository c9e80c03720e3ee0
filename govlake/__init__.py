"""GovLake Spark jobs.

Every job is a pure transform ``DataFrame -> DataFrame`` that receives the SparkSession it
needs; I/O happens only in each module's entry point (``main``), which also runs under
``spark-submit``. Modules:

- :mod:`govlake.core.config`    settings (lakehouse root, Spark master, sources mode) from the environment
- :mod:`govlake.core.spark`     the one SparkSession factory (Delta, time zone, cached jars)
- :mod:`govlake.codes.code_lists`     China code pack: GB 11643 ID numbers, GB/T 2260/2261.1/3304 codes, dates
- :mod:`govlake.codes.udf`       GovLake's own Spark SQL functions in Java (the GB 11643 checks), built and registered
- :mod:`govlake.extract.registry`   the source registry (``schemas/sources/*.yaml``) and readers
- :mod:`govlake.extract.raw`       raw layer: lineage columns, write-once batches, exchange ledger
- :mod:`govlake.quality.rules`   expectation suites, row-level quarantine, GX checkpoint and Data Docs
- :mod:`govlake.unified.persons`   unified layer: standardised persons (MERGE on ID number) and events
- :mod:`govlake.marts.population`     topic marts and analysis tables
- :mod:`govlake.pipeline`  the main job: all stages for one logical date, and the summary
"""
