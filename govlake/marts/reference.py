"""Reference inputs of the marts read from the project's copy of public data (``schemas/reference/``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from govlake.core.config import REFERENCE_DIR, SAMPLE_CITY_CODE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def divisions_frame(spark: SparkSession, city_code: str = SAMPLE_CITY_CODE) -> DataFrame:
    """District codes and names of the city from ``schemas/reference/divisions/areas.csv``.

    Returns:
        DataFrame district_code STRING, district_name STRING.
    """
    import pandas as pd

    areas = pd.read_csv(REFERENCE_DIR / "divisions" / "areas.csv", dtype=str)
    city = areas[areas["cityCode"] == city_code[:4]][["code", "name"]]
    city = city.rename(columns={"code": "district_code", "name": "district_name"}).sort_values("district_code")
    return spark.createDataFrame(city, "district_code string, district_name string")
