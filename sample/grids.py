"""网格 grid boundaries of the sample municipality, published as the grid-management centre's reference data, and
the true grid of every household address (ground truth of the address-to-grid accuracy).

Grids are areas. A community's grids cut the plane around its centre into rectangles of equal expected household
count (:func:`sample.population.grid_boxes`: a k-d partition of the normal distribution the household points
are drawn from; local 网格化服务管理 guidelines size a grid at roughly 300–500 households and the generator draws
U(300, 500)), and a household's grid is the one whose rectangle contains its true address point
(:meth:`Population.grid_at`), as is an event's. The community itself has no boundary in the reference data, so
its area is drawn here from the points it serves: the Voronoi cells of every address and event point of the
district (the region closer to that point than to any other), dissolved per community and clipped to the district
polygon (``schemas/reference/boundaries/districts_130100.geojson``). A grid's polygon is its rectangle cut to its
community's area. So within a community the grids do not overlap, together they cover the community's area, and
each contains exactly the community's points of its rectangle; where two communities' point clouds interleave
their areas (and grids) are fragmented (MultiPolygons).

Cut lines lie half-way between the 1e-6° steps of the address points (never on a point), and a Voronoi edge
between two distinct points is at least 5e-7° from both, so snapping the polygons to 1e-7° moves no point to
another grid.

Output: ``<out>/reference/grid_boundaries.geojson`` (FeatureCollection; properties ``grid_code`` 15 digits,
``community_code`` 12, ``district_code`` 6; coordinates WGS-84 lng/lat degrees as in the boundary file, rounded
to 1e-7°; a grid whose rectangle misses its community's area has no feature) and ``<out>/truth/households.csv``
(:data:`TRUTH_HOUSEHOLD_COLUMNS`, day N).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import shapely

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

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


def community_areas(points: Iterable[tuple[str, str, float, float]],
                    districts: dict[str, BaseGeometry]) -> dict[str, BaseGeometry]:
    """Community areas from address points: per district, the Voronoi cells of its distinct points, dissolved
    per community and clipped to the district polygon.

    Args:
        points: (district_code, community_code, lng, lat) per address or event point (degrees). A point repeated
            with several communities goes to the smallest community_code (deterministic); points of districts not
            in ``districts`` are ignored.
        districts: {district_code: shapely (Multi)Polygon}.
    Returns:
        {community_code: shapely Polygon or MultiPolygon} (not snapped); a district with one distinct point gives
        its community the whole district polygon.
    """
    by_district: dict[str, dict[tuple[float, float], str]] = {}
    for district, community, lng, lat in sorted(points, key=lambda p: (p[0], p[2], p[3], p[1])):
        if district in districts:
            by_district.setdefault(district, {}).setdefault((lng, lat), community)
    areas: dict[str, BaseGeometry] = {}
    for district, seeds in sorted(by_district.items()):
        area = districts[district]
        coords = list(seeds)
        if len(coords) == 1:
            areas[seeds[coords[0]]] = area
            continue
        voronoi = shapely.voronoi_polygons(shapely.MultiPoint(coords), extend_to=area.envelope.buffer(0.01),
                                           ordered=True)
        parts: dict[str, list] = {}
        for xy, cell in zip(coords, shapely.get_parts(voronoi), strict=False):
            parts.setdefault(seeds[xy], []).append(cell)
        for community, polys in sorted(parts.items()):
            areas[community] = shapely.intersection(shapely.union_all(polys), area)
    return areas


def _polygonal(shape):
    """The (Multi)Polygon part of a geometry (an intersection can add stray lines or points), None if empty."""
    polygons = [g for g in shapely.get_parts(shape) if g.geom_type == "Polygon" and not g.is_empty]
    if not polygons:
        return None
    return polygons[0] if len(polygons) == 1 else shapely.union_all(polygons)


def grid_cells(areas: dict[str, BaseGeometry], cells: dict[str, list[tuple[str, tuple[float, float, float, float]]]]
               ) -> dict[str, BaseGeometry]:
    """Grid polygons: each grid's rectangle cut to its community's area, snapped to :data:`PRECISION`.

    Args:
        areas: {community_code: (Multi)Polygon} (:func:`community_areas`).
        cells: {community_code: [(grid_code, (x0, x1, y0, y1))]}, the grids' rectangles in degrees, ±inf on open
            sides (:meth:`sample.population.Population.grid_cells`); communities without an area are skipped.
    Returns:
        {grid_code: shapely Polygon or MultiPolygon}; a grid whose rectangle misses the area is left out.
    """
    out: dict[str, BaseGeometry] = {}
    for community, area in sorted(areas.items()):
        minx, miny, maxx, maxy = area.bounds
        for grid, (x0, x1, y0, y1) in cells.get(community, ()):
            rect = shapely.box(max(x0, minx - 1.0), max(y0, miny - 1.0), min(x1, maxx + 1.0), min(y1, maxy + 1.0))
            shape = _polygonal(shapely.set_precision(shapely.intersection(area, rect), PRECISION))
            if shape is not None:
                out[grid] = shape
    return out


def write_boundaries(path: Path, cells: dict[str, BaseGeometry]) -> int:
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


def publish(out: Path, districts: list, pop, day_n: list[tuple], events: Iterable[tuple[str, float, float]]
            ) -> int:
    """Publish the grid boundaries around every point the sample ever had: the day-N households (``day_n``,
    :func:`household_rows` tuples), the households as of the last day (``pop.households``, which moved
    households' new points join) and the grid events' true points (``events``: (community_code, lng, lat)).
    ``pop`` is the built ``Population`` (its grids' rectangles). Returns the number of grids written."""
    district_of = {c.code: d.code for d in districts for c in d.communities}
    points = [(d, c, lng, lat) for _, d, c, _, _, lng, lat in day_n]
    points += [(h.district.code, h.community.code, h.lng, h.lat) for h in pop.households]
    points += [(district_of[c], c, lng, lat) for c, lng, lat in events]
    areas = community_areas(points, {d.code: d.geometry for d in districts})
    cells = {c: [(g.grid_code, box) for g, box in pop.grid_cells(c)] for c in areas}
    return write_boundaries(Path(out) / BOUNDARIES_FILE, grid_cells(areas, cells))
