"""``python -m govlake.codes.udf [JARS_DIR]``: build GovLake's function jar if needed and print its path."""
from govlake.codes.udf import main

raise SystemExit(main())
