"""Reference inputs of the marts read from the project's copy of public data (``schemas/reference/``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from govlake.core.config import REFERENCE_DIR, SAMPLE_CITY_CODE

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession


def city_divisions(city_code: str = SAMPLE_CITY_CODE) -> pd.DataFrame:
    """District codes and names of the city from ``schemas/reference/divisions/areas.csv`` (GB/T 2260).

    Returns:
        pandas DataFrame district_code (str), district_name (str), sorted by code.
    """
    import pandas as pd

    areas = pd.read_csv(REFERENCE_DIR / "divisions" / "areas.csv", dtype=str)
    city = areas[areas["cityCode"] == city_code[:4]][["code", "name"]]
    return city.rename(columns={"code": "district_code", "name": "district_name"}).sort_values("district_code")


def divisions_frame(spark: SparkSession, city_code: str = SAMPLE_CITY_CODE) -> DataFrame:
    """:func:`city_divisions` as a Spark DataFrame district_code STRING, district_name STRING."""
    return spark.createDataFrame(city_divisions(city_code), "district_code string, district_name string")
