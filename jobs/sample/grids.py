"""网格 grid boundaries of the sample municipality, published as the grid-management centre's reference data, and
the true grid of every household address (ground truth of the address-to-grid accuracy).

The generator draws each household's grid among its community's grids (:meth:`Population.community_grids`) without
a boundary. A grid-management centre delimits its grids around the addresses it serves (local 网格化服务管理
guidelines size a grid at roughly 300–500 households; the generator draws U(300, 500)). The boundaries here follow that idea mechanically and deterministically: the Voronoi cell of every
household address point (the region closer to it than to any other address point of the district), dissolved per
grid and clipped to the district polygon (``schemas/reference/boundaries/districts_130100.geojson``). So a grid is
a (Multi)Polygon that contains exactly its own address points; as the generator draws grids independently of the
point, the cells of one community's grids interleave (fragmented MultiPolygons), unlike real grids.

Output: ``<out>/reference/grid_boundaries.geojson`` (FeatureCollection; properties ``grid_code`` 15 digits,
``community_code`` 12, ``district_code`` 6; coordinates WGS-84 lng/lat degrees as in the boundary file, rounded
to 1e-7°) and ``<out>/truth/households.csv`` (:data:`TRUTH_HOUSEHOLD_COLUMNS`, day N).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import shapely

#: Where the generator publishes the grid boundaries, relative to its output folder.
BOUNDARIES_FILE = Path("reference") / "grid_boundaries.geojson"
#: Columns of ``truth/households.csv``: one row per household of day N (true values).
TRUTH_HOUSEHOLD_COLUMNS = ("household_no", "district_code", "community_code", "grid_code", "address", "lng", "lat")
#: Grid size of the published coordinates, degrees (≈ 1 cm): far below the 1e-6° spacing of the address points.
PRECISION = 1e-7


def household_rows(pop) -> list[tuple]:
    """:data:`TRUTH_HOUSEHOLD_COLUMNS` tuples of every household of ``pop`` (a built ``Population``), in order."""
    return [(h.household_no, h.district.code, h.community.code, h.grid.grid_code, h.address, h.lng, h.lat)
            for h in pop.households]


def grid_cells(points: Iterable[tuple[str, float, float, str]], districts: dict[str, object]) -> dict[str, object]:
    """Grid polygons from address points: per district, the Voronoi cells of its distinct points, dissolved per
    grid and clipped to the district polygon.

    Args:
        points: (district_code, lng, lat, grid_code) per address point (degrees). A point repeated with several
            grids goes to the smallest grid_code (deterministic); points of districts not in ``districts`` are
            ignored.
        districts: {district_code: shapely (Multi)Polygon}.
    Returns:
        {grid_code: shapely Polygon or MultiPolygon}, coordinates snapped to :data:`PRECISION`; a district with one
        distinct point gives its grid the whole district polygon.
    """
    by_district: dict[str, dict[tuple[float, float], str]] = {}
    for district, lng, lat, grid in sorted(points, key=lambda p: (p[0], p[1], p[2], p[3])):
        if district in districts:
            by_district.setdefault(district, {}).setdefault((lng, lat), grid)
    cells: dict[str, object] = {}
    for district, seeds in sorted(by_district.items()):
        area = districts[district]
        coords = list(seeds)
        if len(coords) == 1:
            parts = {seeds[coords[0]]: [area]}
        else:
            voronoi = shapely.voronoi_polygons(shapely.MultiPoint(coords), extend_to=area.envelope.buffer(0.01),
                                               ordered=True)
            parts = {}
            for xy, cell in zip(coords, shapely.get_parts(voronoi)):
                parts.setdefault(seeds[xy], []).append(cell)
        for grid, polys in sorted(parts.items()):
            shape = shapely.intersection(shapely.union_all(polys), area)
            shape = shapely.set_precision(shape, PRECISION)
            polygons = [g for g in shapely.get_parts(shape) if g.geom_type in ("Polygon", "MultiPolygon")]
            cells[grid] = polygons[0] if len(polygons) == 1 else shapely.union_all(polygons)
    return cells


def write_boundaries(path: Path, cells: dict[str, object]) -> int:
    """Write ``cells`` ({grid_code: geometry}) as a GeoJSON FeatureCollection sorted by grid_code. Returns the
    number of features."""
    features = [{"type": "Feature",
                 "properties": {"grid_code": code, "community_code": code[:12], "district_code": code[:6]},
                 "geometry": json.loads(shapely.to_geojson(geom))}
                for code, geom in sorted(cells.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False,
                               separators=(",", ":")) + "\n", encoding="utf-8")
    return len(features)


def publish(out: Path, districts: list, day_n: list[tuple], households: list) -> int:
    """Publish the grid boundaries of every address point the sample ever had: the day-N households (``day_n``,
    :func:`household_rows` tuples) and the households as of the last day (``households``, which moved
    households' new points join). Returns the number of grids written."""
    points = [(d, lng, lat, g) for _, d, _, g, _, lng, lat in day_n]
    points += [(h.district.code, h.lng, h.lat, h.grid.grid_code) for h in households]
    cells = grid_cells(points, {d.code: d.geometry for d in districts})
    return write_boundaries(Path(out) / BOUNDARIES_FILE, cells)
