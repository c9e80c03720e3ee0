"""Synthetic population of the sample municipality: households, residents, 网格 grid cells and address points.

Everything is drawn from one seeded ``random.Random`` and one seeded ``Faker('zh_CN')``, in a fixed order, so the
same arguments always give the same population.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import accumulate
from statistics import NormalDist

import shapely
from faker import Faker

from sample.attributes import assign_attributes
from sample.kinship import (  # noqa: F401 (re-exported: the generator's modules import them from here)
    REL_DAUGHTER,
    REL_FATHER,
    REL_GRANDDAUGHTER,
    REL_GRANDSON,
    REL_HEAD,
    REL_MOTHER,
    REL_OTHER_KIN,
    REL_SON,
    REL_SPOUSE,
    allocate,
)
from sample.reference import MAX_AGE, Community, District

#: GB 11643-1999 weights W_i = 2^(17-i) mod 11 of the 17 body digits and the check characters by sum mod 11.
_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK = "10X98765432"


def check_char(body17: str) -> str:
    """GB 11643-1999 check character of a 17-digit body (ISO 7064 MOD 11-2), e.g. '11010519491231002' → 'X'.
    Same value as :func:`govlake.codes.code_lists.id_check_char` (tested equal), without its input validation
    (bodies here are generated)."""
    return _ID_CHECK[sum(map(int.__mul__, map(int, body17), _ID_WEIGHTS)) % 11]


#: GB/T 3304-1991 codes of the minorities drawn (回 满 蒙古 维吾尔 朝鲜 壮 苗 土家 藏) and their weights
#: among the ~8% non-Han households. 05 维吾尔族 households get names with the middle dot '·'.
MINORITY_WEIGHTS = (("03", 40), ("11", 28), ("02", 10), ("05", 8), ("10", 4), ("08", 3), ("06", 3),
                    ("15", 2), ("04", 2))
HAN_SHARE = 0.92
UYGHUR = "05"
UYGHUR_MALE = ("艾力", "买买提", "阿不都", "热合曼", "吐尔逊", "艾则孜", "依明", "库尔班", "尼亚孜", "玉苏甫",
               "阿布拉", "亚森", "麦麦提", "努尔艾力", "帕尔哈提")
UYGHUR_FEMALE = ("古丽", "阿依古丽", "帕提古丽", "迪丽努尔", "热孜宛", "阿依努尔", "米热古丽", "祖丽菲娅",
                 "努尔尼沙", "海丽其汗")

#: Hour-of-day weights of events and updates (local time): more in working hours.
HOUR_WEIGHTS = (0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.5, 4, 6, 6, 5, 3, 4, 6, 6, 5, 4, 2.5, 2, 1.5, 1, 0.7, 0.5)
#: Cumulative :data:`HOUR_WEIGHTS`: ``rng.choices(HOURS, cum_weights=HOUR_CUM)`` draws exactly what
#: ``rng.choices(range(24), weights=HOUR_WEIGHTS)`` draws, without re-accumulating the weights on every call.
HOURS = tuple(range(24))
HOUR_CUM = tuple(accumulate(HOUR_WEIGHTS))


class FakerDraws:
    """Bulk equivalents of the ``Faker('zh_CN')`` calls the population makes a million times.

    Each method draws from the Faker's own seeded ``random.Random`` exactly what the Faker method would (same
    calls in the same order, hence the same value), but with the weights accumulated once instead of on every
    call (Faker's ``random_element`` on a weighted OrderedDict re-accumulates ~400 weights per name).
    """

    def __init__(self, fake: Faker):
        person = fake.provider("faker.providers.person")
        phone = fake.provider("faker.providers.phone_number")
        self.random = person.generator.random
        self._last = tuple(person.last_names.keys())
        self._last_cum = tuple(accumulate(person.last_names.values()))
        self._male = tuple(person.first_names_male)
        self._female = tuple(person.first_names_female)
        self._phone_formats = list(phone.formats)

    def last_name(self) -> str:
        """== ``fake.last_name()`` (weighted by Faker's surname frequencies)."""
        return self.random.choices(self._last, cum_weights=self._last_cum)[0]

    def first_name_male(self) -> str:
        """== ``fake.first_name_male()``."""
        return self.random.choice(self._male)

    def first_name_female(self) -> str:
        """== ``fake.first_name_female()``."""
        return self.random.choice(self._female)

    def phone_number(self) -> str:
        """== ``fake.phone_number()``: a mobile prefix such as '138' and 8 random digits."""
        fmt = self.random.choice(self._phone_formats)
        below = self.random._randbelow  # what randint(0, 9) calls: same draws
        return "".join(str(below(10)) if c == "#" else c for c in fmt)


#: GB/T 2260 changes in Shijiazhuang (国务院批复, September 2014): 藁城市 130182 → 藁城区 130109, 鹿泉市 130185 →
#: 鹿泉区 130110, 栾城县 130124 → 栾城区 130111. A citizen ID keeps the division code of its first registration
#: (GB 11643: the number never changes), so people born there before the change carry the former code.
FORMER_DIVISIONS = {"130109": "130182", "130110": "130185", "130111": "130124"}
DIVISION_CHANGE_DATE = date(2014, 9, 9)


def id_division_code(district_code: str, birth: date) -> str:
    """The 6-digit division code in the ID of a person registered at birth in ``district_code`` (current code):
    the former code for births before :data:`DIVISION_CHANGE_DATE` in a district renamed then, else the current."""
    if birth < DIVISION_CHANGE_DATE and district_code in FORMER_DIVISIONS:
        return FORMER_DIVISIONS[district_code]
    return district_code


#: σ (degrees) of the household address points around their community's centre (:meth:`Population.point_in`).
HOUSEHOLD_SPREAD = 0.004
#: Spacing (degrees) of the address points: :meth:`Population.point_in` rounds lng and lat to 6 decimals.
POINT_STEP = 1e-6

#: A grid's cell as half-open coordinate intervals (x0, x1, y0, y1): x0 <= lng < x1 and y0 <= lat < y1, degrees,
#: ±inf on the open sides.
Box = tuple[float, float, float, float]


def _half_step(x: float) -> float:
    """``x`` moved to the nearest odd multiple of POINT_STEP / 2 below it: a cut line no address point (a multiple
    of :data:`POINT_STEP`) can lie on or within 5e-7° of, so snapping published polygons to 1e-7° never moves a
    point across it."""
    return (math.floor(x / POINT_STEP) + 0.5) * POINT_STEP


def grid_boxes(centre: tuple[float, float], n: int, spread: float = HOUSEHOLD_SPREAD) -> list[Box]:
    """The cells of a community's ``n`` grids: a k-d partition of the plane into ``n`` rectangles of equal
    probability under the bivariate normal N(centre, spread²·I) that the household points are drawn from
    (:meth:`Population.point_in`), so each grid expects the same number of households (网格化 guidelines: grids of
    about equal size, 300–500 households).

    Recursive: a box of k grids is cut, across its longer side in probability space (u = Φ((lng − centre) / σ),
    v likewise; ties across u), into ⌊k/2⌋ and k − ⌊k/2⌋ grids at the matching share of its probability; each cut
    is then moved to the half-step below it (:func:`_half_step`). Boxes are listed in cut order (lower side
    first) and grid k (1-based) of the community gets box k − 1. Pure: depends only on the arguments.

    Args:
        centre: (lng, lat) degrees, the community's centre (:meth:`Population.anchor`).
        n: number of grids (≥ 1).
        spread: σ of the points, degrees.
    Returns:
        ``n`` :data:`Box` es covering the plane without overlap.
    Raises:
        ValueError: ``n`` < 1.
    """
    if n < 1:
        raise ValueError(f"a community has at least one grid, got {n}")
    normal = NormalDist()

    def coord(u: float, axis: int) -> float:
        if u <= 0.0:
            return -math.inf
        if u >= 1.0:
            return math.inf
        return _half_step(centre[axis] + spread * normal.inv_cdf(u))

    out: list[Box] = []

    def split(u0: float, u1: float, v0: float, v1: float, x0: float, x1: float, y0: float, y1: float, k: int):
        if k == 1:
            out.append((x0, x1, y0, y1))
            return
        low = k // 2
        if u1 - u0 >= v1 - v0:
            u = u0 + (u1 - u0) * low / k
            x = coord(u, 0)
            split(u0, u, v0, v1, x0, x, y0, y1, low)
            split(u, u1, v0, v1, x, x1, y0, y1, k - low)
        else:
            v = v0 + (v1 - v0) * low / k
            y = coord(v, 1)
            split(u0, u1, v0, v, x0, x1, y0, y, low)
            split(u0, u1, v, v1, x0, x1, y, y1, k - low)

    split(0.0, 1.0, 0.0, 1.0, -math.inf, math.inf, -math.inf, math.inf, n)
    return out


def box_index(boxes: list[Box], lng: float, lat: float) -> int:
    """Index of the box of ``boxes`` that contains (lng, lat) (half-open, see :data:`Box`).

    Raises:
        ValueError: no box contains the point (boxes not from :func:`grid_boxes`, or a NaN coordinate).
    """
    for k, (x0, x1, y0, y1) in enumerate(boxes):
        if x0 <= lng < x1 and y0 <= lat < y1:
            return k
    raise ValueError(f"point ({lng}, {lat}) in no grid box")


@dataclass(slots=True)
class Grid:
    """A 网格 grid cell: grid_code = 12-digit community code + 3 digits; one grid worker (网格员) each."""

    grid_code: str
    community_code: str
    worker_id: str
    worker_name: str


@dataclass(slots=True)
class Person:
    """A resident (true values; faults are applied to delivered copies only)."""

    person_no: str
    id_no: str
    name: str
    sex_code: str
    birth: date
    age: int
    ethnic_code: str
    household_no: str
    relation_code: str
    community_code: str
    district_code: str
    address: str
    phone: str
    updated_at: datetime
    #: GB/T 4658-2006 code, None under 6 (see :mod:`sample.attributes`).
    education: str | None = None
    #: GB/T 2261.2-2003 code, None under 15.
    marital_status: str | None = None
    #: '户籍' (registered here) or '流动' (household registered elsewhere).
    registration_type: str = "户籍"


@dataclass(slots=True)
class Household:
    """A family household (家庭户) with its head first in ``members``."""

    household_no: str
    district: District
    community: Community
    street_name: str
    grid: Grid
    address: str
    lng: float
    lat: float
    registered_date: date
    updated_at: datetime
    ethnic_code: str
    members: list[Person] = field(default_factory=list)
    #: resident here, household registered (户口登记地) in another county or province.
    is_floating: bool = False


#: Residents of a district drawn before the first calibration update (see Population._calibrate).
CALIBRATION_FIRST = 500


def age_group(age: int) -> int:
    """5-year age group index of the census tables: 0 = 0–4, 1 = 5–9, …, 16 = 80–84, 17 = 85 and over."""
    return min(age // 5, 17)


def _group_shares(district: District) -> dict[tuple[str, int], float]:
    """{(sex_code, age group): share of the district's census population} from its single-year weights."""
    total = sum(sum(w) for w in district.age_weights.values())
    shares: dict[tuple[str, int], float] = {}
    for sex, weights in district.age_weights.items():
        for age, w in enumerate(weights):
            shares[(sex, age_group(age))] = shares.get((sex, age_group(age)), 0.0) + w / total
    return shares


def shift_years(day: date, years: int) -> date:
    """``day`` moved by whole years; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def short_community_name(name: str) -> str:
    """'棉一东社区居民委员会' → '棉一东社区', '东营村民委员会' → '东营村' (address text)."""
    for suffix in ("居民委员会", "村民委员会", "居委会", "村委会"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            if suffix in ("村民委员会", "村委会") and not stem.endswith("村"):
                stem += "村"
            return stem or name
    return name


def random_local_time(rng: random.Random, first: date, last: date) -> datetime:
    """A local wall-clock time on a day in [first, last], hours weighted by :data:`HOUR_WEIGHTS`."""
    # rng._randbelow(n) is exactly what randint/randrange call underneath: same draws, less call overhead
    lo = first.toordinal()
    day = date.fromordinal(lo + rng._randbelow(last.toordinal() - lo + 1))  # type: ignore[attr-defined]
    hour = rng.choices(HOURS, cum_weights=HOUR_CUM)[0]
    return datetime(day.year, day.month, day.day, hour, rng._randbelow(60), rng._randbelow(60))  # type: ignore[attr-defined]


class Population:
    """Build households and residents of the sample city.

    Args:
        districts: from :func:`sample.reference.load_districts`.
        residents: number of residents (≥ 1).
        seed: the run's seed.
        logical_date: the date the registry is current on (ages are taken on this date).
        fake: a ``Faker('zh_CN')`` seeded by the caller.

    After :meth:`build`: ``households`` (list of :class:`Household`), ``persons`` (list of :class:`Person`, by
    household, head first), ``grids`` ({grid_code: :class:`Grid`}) and ``anchors`` ({community_code: (lng, lat)}).
    A household's grid is the grid whose cell (:meth:`grid_cells`) contains its address point.
    """

    def __init__(self, districts: list[District], residents: int, seed: int, logical_date: date, fake: Faker):
        if residents < 1:
            raise ValueError("residents must be at least 1")
        self.districts = districts
        self.residents = residents
        self.logical_date = logical_date
        self.seed = seed
        self.fake = fake
        self.draws = FakerDraws(fake)
        self._age_tables: dict[tuple, tuple[list, list]] = {}
        # census calibration (see _calibrate): per district, target share and achieved count per (sex, 5-year
        # group), and the correction factor applied to the census weights of that group
        self._target = {d.code: _group_shares(d) for d in districts}
        self._achieved = {d.code: dict.fromkeys(self._target[d.code], 0) for d in districts}
        self._factor = {d.code: dict.fromkeys(self._target[d.code], 1.0) for d in districts}
        self._drawn = dict.fromkeys(self._target, 0)
        self._next_update = dict.fromkeys(self._target, CALIBRATION_FIRST)
        self.rng = random.Random(f"{seed}:population")
        self.households: list[Household] = []
        self.persons: list[Person] = []
        self.grids: dict[str, Grid] = {}
        self.anchors: dict[str, tuple[float, float]] = {}
        self._community_grids: dict[str, list[Grid]] = {}
        self._grid_boxes: dict[str, list[Box]] = {}
        self._used_ids: set[str] = set()
        self._next_person = self.rng.randint(10_000_000, 40_000_000)
        self._next_household = self.rng.randint(10_000_000, 40_000_000)

    # ---------------------------------------------------------------- geography
    def point_in(self, district: District, near: tuple[float, float] | None = None,
                 spread: float = HOUSEHOLD_SPREAD) -> tuple[float, float]:
        """A point (lng, lat rounded to 6 decimals) inside ``district``'s polygon.

        Rejection sampling: uniform in the polygon's bounds, or Gaussian around ``near`` (σ = ``spread`` degrees,
        falling back to ``near`` itself after 50 misses).
        """
        rng = self.rng
        if near is not None:
            for _ in range(50):
                lng = round(rng.gauss(near[0], spread), 6)
                lat = round(rng.gauss(near[1], spread), 6)
                if shapely.contains_xy(district.geometry, lng, lat):
                    return lng, lat
            return near
        minx, miny, maxx, maxy = district.geometry.bounds
        while True:
            lng = round(rng.uniform(minx, maxx), 6)
            lat = round(rng.uniform(miny, maxy), 6)
            if shapely.contains_xy(district.geometry, lng, lat):
                return lng, lat

    def anchor(self, district: District, community: Community) -> tuple[float, float]:
        """The community's centre point (drawn once, inside the district)."""
        if community.code not in self.anchors:
            self.anchors[community.code] = self.point_in(district)
        return self.anchors[community.code]

    def community_grids(self, district: District, community: Community) -> list[Grid]:
        """The grid cells of a community, made on first use.

        The community's real household count is estimated as the district's census family households over its
        communities (×0.5–1.5); one grid per 300–500 of them (at least one).
        """
        if community.code not in self._community_grids:
            rng = self.rng
            est = district.family_households / len(district.communities) * rng.uniform(0.5, 1.5)
            n = max(1, min(999, round(est / rng.uniform(300, 500))))
            grids = []
            for k in range(1, n + 1):
                code = f"{community.code}{k:03d}"
                grid = Grid(grid_code=code, community_code=community.code, worker_id=f"W{code}",
                            worker_name=self.fake.name())
                self.grids[code] = grid
                grids.append(grid)
            self._community_grids[community.code] = grids
        return self._community_grids[community.code]

    def grid_cells(self, community_code: str) -> list[tuple[Grid, Box]]:
        """(grid, cell) of every grid of a community: the cells of :func:`grid_boxes` around the community's
        anchor, grid k in box k − 1.

        Raises:
            KeyError: the community has no anchor or no grids yet (:meth:`anchor`, :meth:`community_grids`).
        """
        grids = self._community_grids[community_code]
        boxes = self._grid_boxes.get(community_code)
        if boxes is None:
            boxes = self._grid_boxes[community_code] = grid_boxes(self.anchors[community_code], len(grids))
        return list(zip(grids, boxes, strict=False))

    def grid_at(self, community: Community, lng: float, lat: float) -> Grid:
        """The grid of ``community`` whose cell contains the point (lng, lat) (degrees): a household's or an
        event's grid is the one its true point lies in.

        Raises:
            KeyError: as :meth:`grid_cells`.
        """
        cells = self.grid_cells(community.code)
        return cells[box_index([b for _, b in cells], lng, lat)][0]

    # ---------------------------------------------------------------- people
    def _sample_age(self, district: District, sex: str | None, lo: int, hi: int) -> tuple[str, int]:
        """(sex_code, age) from the district's census pyramid restricted to ages lo..hi (and ``sex`` if given)."""
        lo, hi = max(0, lo), min(MAX_AGE, hi)
        if hi < lo:
            hi = lo
        key = (district.code, sex, lo, hi)
        table = self._age_tables.get(key)
        if table is None:
            options, weights = [], []
            factor = self._factor[district.code]
            for s in ((sex,) if sex else ("1", "2")):
                w = district.age_weights[s]
                for age in range(lo, hi + 1):
                    options.append((s, age))
                    weights.append(w[age] * factor[(s, age_group(age))] + 1e-9)
            table = self._age_tables[key] = (options, list(accumulate(weights)))
        return self.rng.choices(table[0], cum_weights=table[1])[0]

    def _birth_for_age(self, age: int) -> date:
        """A birth date giving exactly ``age`` whole years on the logical date."""
        hi = shift_years(self.logical_date, -age)
        lo = shift_years(self.logical_date, -(age + 1)) + timedelta(days=1)
        return date.fromordinal(self.rng.randint(lo.toordinal(), hi.toordinal()))

    def make_id(self, district_code: str, birth: date, sex_code: str, want_x: bool = False) -> str:
        """A unique GB 11643 ID: 6-digit division code + YYYYMMDD + 3-digit sequence (odd = male) + check char.

        Raises:
            RuntimeError: no free sequence number is left for this code and birth date.
        """
        body15 = f"{district_code}{birth:%Y%m%d}"
        parity = 1 if sex_code == "1" else 0
        for _ in range(2000):
            seq = self.rng._randbelow(500) * 2 + parity  # type: ignore[attr-defined]  # == randrange(0, 500)
            if seq == 0:
                continue
            body = f"{body15}{seq:03d}"
            id_no = body + check_char(body)
            if id_no in self._used_ids or (want_x and not id_no.endswith("X")):
                continue
            self._used_ids.add(id_no)
            return id_no
        raise RuntimeError(f"no free ID sequence for {body15}")

    def _name(self, ethnic: str, sex: str, surname: str | None, father_given: str | None
              ) -> tuple[str, str, str | None]:
        """(full name, given name, surname). Uyghur names are 'given·father's given' (no surname)."""
        if ethnic == UYGHUR:
            given = self.rng.choice(UYGHUR_MALE if sex == "1" else UYGHUR_FEMALE)
            father = father_given or self.rng.choice(UYGHUR_MALE)
            return f"{given}·{father}", given, None
        given = self.draws.first_name_male() if sex == "1" else self.draws.first_name_female()
        surname = surname or self.draws.last_name()
        return f"{surname}{given}", given, surname

    def _roles(self, size: int, head_age: int) -> list[str]:
        """Relation codes of the non-head members of a household of ``size`` whose head is ``head_age``."""
        rng = self.rng
        roles: list[str] = []
        if size >= 2 and head_age >= 22 and rng.random() < 0.85:
            roles.append(REL_SPOUSE)
        left = size - 1 - len(roles)
        if head_age >= 20:
            kids = min(left, 3 if head_age < 60 else 2)
            roles += [REL_SON if rng.random() < 0.51 else REL_DAUGHTER for _ in range(kids)]
            left -= kids
        if left and head_age >= 45:
            roles += [REL_GRANDSON if rng.random() < 0.51 else REL_GRANDDAUGHTER for _ in range(left)]
            left = 0
        if left and head_age <= 60:
            parents = [REL_FATHER, REL_MOTHER][:left]
            roles += parents
            left -= len(parents)
        roles += [REL_OTHER_KIN] * left
        return roles

    def _household_size(self, district: District) -> int:
        """Size drawn from the district census: P(1) = 一人户数/家庭户数, else 2 + Poisson(λ) matching 户规模."""
        rng = self.rng
        p1 = district.one_person_households / district.family_households
        if rng.random() < p1:
            return 1
        rest = ((district.family_household_persons - district.one_person_households)
                / (district.family_households - district.one_person_households))
        lam, k, p = max(rest - 2.0, 0.05), 0, 1.0
        limit = math.exp(-lam)
        while True:
            p *= rng.random()
            if p <= limit or k >= 6:
                return 2 + k
            k += 1

    def _new_person(self, hh: Household, district: District, relation: str, sex: str, age: int, name: str,
                    phone: str | None) -> Person:
        birth = self._birth_for_age(age)
        person = Person(
            person_no=f"HK{self._next_person:08d}",
            id_no=self.make_id(id_division_code(district.code, birth), birth, sex),
            name=name,
            sex_code=sex, birth=birth, age=age, ethnic_code=hh.ethnic_code, household_no=hh.household_no,
            relation_code=relation, community_code=hh.community.code, district_code=district.code,
            address=hh.address, phone=phone or self.draws.phone_number(),
            updated_at=random_local_time(self.rng, self.logical_date - timedelta(days=730), self.logical_date))
        self._next_person += 1
        code = district.code
        self._achieved[code][(sex, age_group(age))] += 1
        self._drawn[code] += 1
        if self._drawn[code] >= self._next_update[code]:
            self._calibrate(code)
        return person

    def _calibrate(self, code: str) -> None:
        """Feedback of the census calibration of district ``code``.

        Household roles restrict ages (children 20–45 years younger than the head, …), which alone would
        over-represent young children by ~1.7 percentage points. So each (sex, 5-year group) weight of the census
        pyramid is multiplied by a factor, updated here as f ← f × (target share / achieved share)^½ (clamped to
        0.05–20), after 500 residents of the district and then each time the district has grown by a quarter.
        Deterministic: depends only on what was drawn so far.
        """
        n = self._drawn[code]
        achieved, target, factor = self._achieved[code], self._target[code], self._factor[code]
        for key, share in target.items():
            got = max(achieved[key], 0.5) / n
            factor[key] = min(20.0, max(0.05, factor[key] * ((share + 1e-6) / got) ** 0.5))
        self._next_update[code] = n + max(CALIBRATION_FIRST, n // 4)
        for key in [k for k in self._age_tables if k[0] == code]:
            del self._age_tables[key]

    def _household(self, district: District, size: int, force_uyghur: bool) -> Household:
        rng = self.rng
        community = rng.choice(district.communities)
        # the grid follows from the point below; this draw (the grid, drawn at random before grids were spatial)
        # is kept so that every later draw, hence every other value of the sample, stays the same
        rng.choice(self.community_grids(district, community))
        street = district.streets[community.street_code]
        place = f"{district.name}{street}{short_community_name(community.name)}"
        if community.is_village:
            address = f"{place}{rng.randint(1, 320)}号"
        else:
            address = (f"{place}{rng.randint(1, 36)}号楼{rng.randint(1, 6)}单元"
                       f"{rng.randint(1, 18)}{rng.randint(1, 4):02d}室")
        lng, lat = self.point_in(district, near=self.anchor(district, community))
        grid = self.grid_at(community, lng, lat)
        if force_uyghur:
            ethnic = UYGHUR
        elif rng.random() < HAN_SHARE:
            ethnic = "01"
        else:
            ethnic = rng.choices([c for c, _ in MINORITY_WEIGHTS], weights=[w for _, w in MINORITY_WEIGHTS])[0]
        hh = Household(household_no=f"H{self._next_household:08d}", district=district, community=community,
                       street_name=street, grid=grid, address=address, lng=lng, lat=lat,
                       registered_date=self.logical_date, updated_at=datetime(2000, 1, 1), ethnic_code=ethnic)
        self._next_household += 1

        head_sex, head_age = self._sample_age(district, None, 20 if size > 1 else 18, MAX_AGE)
        head_name, head_given, head_surname = self._name(ethnic, head_sex, None, None)
        head = self._new_person(hh, district, REL_HEAD, head_sex, head_age, head_name, None)
        hh.members.append(head)
        surname = head_surname
        spouse_given = None
        for role in self._roles(size, head_age):
            if role == REL_SPOUSE:
                sex, age = self._sample_age(district, "2" if head_sex == "1" else "1", max(20, head_age - 6),
                                            head_age + 6)
                name, spouse_given, spouse_surname = self._name(ethnic, sex, None, None)
                if head_sex == "2":
                    surname = spouse_surname
            elif role in (REL_SON, REL_DAUGHTER):
                sex = "1" if role == REL_SON else "2"
                _, age = self._sample_age(district, sex, head_age - 45, head_age - 20)
                father = head_given if head_sex == "1" else spouse_given
                name, _, _ = self._name(ethnic, sex, surname, father)
            elif role in (REL_GRANDSON, REL_GRANDDAUGHTER):
                sex = "1" if role == REL_GRANDSON else "2"
                _, age = self._sample_age(district, sex, head_age - 70, head_age - 42)
                name, _, _ = self._name(ethnic, sex, surname, None)
            elif role in (REL_FATHER, REL_MOTHER):
                sex = "1" if role == REL_FATHER else "2"
                _, age = self._sample_age(district, sex, head_age + 20, head_age + 38)
                name, _, _ = self._name(ethnic, sex, surname if sex == "1" and head_sex == "1" else None, None)
            else:
                sex, age = self._sample_age(district, None, 0, MAX_AGE)
                name, _, _ = self._name(ethnic, sex, None, None)
            phone = head.phone if age < 16 else None
            hh.members.append(self._new_person(hh, district, role, sex, age, name, phone))

        adult = shift_years(head.birth, 18)
        first = max(adult, date(1985, 1, 1))
        last = self.logical_date - timedelta(days=30)
        hh.registered_date = date.fromordinal(rng.randint(min(first, last).toordinal(), last.toordinal()))
        hh.updated_at = random_local_time(rng, max(hh.registered_date, self.logical_date - timedelta(days=730)),
                                          self.logical_date)
        for person in hh.members:
            if person.updated_at.date() < hh.registered_date:
                person.updated_at = random_local_time(rng, hh.registered_date, self.logical_date)
        return hh

    def build(self) -> Population:
        """Draw the whole population: district quotas ∝ census population, then households until each quota is met.

        The last household of a district is cut to fit its quota. At least two households (when there are that
        many) are 维吾尔族 so that names with '·' exist. At least one ID ends with the check character 'X'.
        Then education, marital status and registration type (:func:`sample.attributes.assign_attributes`,
        own random stream: the other draws do not change).
        """
        quotas = allocate(self.residents, [d.population for d in self.districts])
        uyghur_slots = set(self.rng.sample(range(max(2, self.residents // 6)), 2))
        index = 0
        for district, quota in zip(self.districts, quotas, strict=False):
            left = quota
            while left > 0:
                size = min(self._household_size(district), left)
                hh = self._household(district, size, force_uyghur=index in uyghur_slots)
                self.households.append(hh)
                self.persons.extend(hh.members)
                left -= size
                index += 1
        if self.persons and not any(p.id_no.endswith("X") for p in self.persons):
            p = self.persons[self.rng.randrange(len(self.persons))]
            self._used_ids.discard(p.id_no)
            p.id_no = self.make_id(id_division_code(p.district_code, p.birth), p.birth, p.sex_code, want_x=True)
        assign_attributes(self, self.seed)
        return self
