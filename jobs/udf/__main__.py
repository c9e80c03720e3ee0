"""``python -m jobs.udf [JARS_DIR]``: build GovLake's function jar if needed and print its path."""
from jobs.udf import main

raise SystemExit(main())
