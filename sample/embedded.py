"""The embedded sample municipality of the demo: generated once per (seed, size, logical date, generator code).

    python -m sample.embedded [--date 2025-06-30] [--residents 2000] [--seed 20250630]
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

from govlake.core.config import SAMPLE_LOGICAL_DATE, Settings
from sample.generate import DEFAULT_RESIDENTS, DEFAULT_SEED, generate

__all__ = ["DEFAULT_RESIDENTS", "DEFAULT_SEED", "ensure_sample_sources", "generator_fingerprint", "main"]


def ensure_sample_sources(settings: Settings, logical_date: dt.date, residents: int, seed: int) -> dict:
    """Generate the embedded sample municipality unless the same one is already there: same seed, size and
    logical date, made by the same generator code (:func:`generator_fingerprint`, kept in
    ``<sources>/truth/generator.sha256``), so a sample left by an older GovLake is regenerated.

    Returns:
        the generator's summary (counts per table).
    """
    marker = settings.sources_dir / "truth" / "summary.json"
    made_by = settings.sources_dir / "truth" / "generator.sha256"
    fingerprint = generator_fingerprint()
    if marker.is_file() and made_by.is_file() and made_by.read_text(encoding="utf-8").strip() == fingerprint:
        summary = json.loads(marker.read_text(encoding="utf-8"))
        if ((summary.get("seed"), summary.get("residents"), str(summary.get("logical_date")))
                == (seed, residents, logical_date.isoformat())):
            return summary
    generate(residents=residents, seed=seed, logical_date=logical_date, target="embedded", out=settings.sources_dir)
    made_by.write_text(fingerprint + "\n", encoding="utf-8")
    return json.loads(marker.read_text(encoding="utf-8"))


def generator_fingerprint() -> str:
    """SHA-256 (hex) over the sample generator's source files (``sample/*.py``, by name): changes whenever
    the generator's code does."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()



def main(argv: list[str] | None = None) -> int:
    """Command line: make sure the embedded sample for ``--date`` is under ``GOVLAKE_HOME``'s sources folder."""
    parser = argparse.ArgumentParser(prog="python -m sample.embedded", description=__doc__.splitlines()[0])
    parser.add_argument("--date", default=SAMPLE_LOGICAL_DATE, type=dt.date.fromisoformat, help="logical date")
    parser.add_argument("--residents", type=int, default=DEFAULT_RESIDENTS, help="size of the sample municipality")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if settings.sources_mode != "embedded":
        print(f"sample.embedded: sources mode is {settings.sources_mode!r}, nothing to generate", file=sys.stderr)
        return 0
    summary = ensure_sample_sources(settings, args.date, args.residents, args.seed)
    print(f"sample municipality: {summary.get('residents')} residents, seed {summary.get('seed')}, "
          f"logical date {summary.get('logical_date')} in {settings.sources_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
