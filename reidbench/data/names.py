"""File-name rules: how each official layout encodes identity, camera (and scene) in a file name."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Parsed:
    """Labels read from one file name (``camid`` is 0-based)."""

    pid: int
    camid: int
    sceneid: int = -1


@dataclass(frozen=True)
class NameRule:
    """A file-name pattern with named groups ``pid``, ``cam`` and optionally ``scene``, plus label ranges.

    ``cams`` is the range of camera numbers as written in the name; ``cam_base`` is subtracted to get
    the 0-based camera id. Identities in ``skip_pids`` (Market's ``-1`` junk images) are not samples.
    """

    pattern: re.Pattern[str]
    example: str
    pids: tuple[int, int]
    cams: tuple[int, int]
    cam_base: int = 1
    skip_pids: tuple[int, ...] = ()

    def parse(self, name: str) -> Parsed | str | None:
        """The labels of ``name``; an error message when it does not parse or is out of range;
        None to skip."""
        match = self.pattern.match(name)
        if not match:
            return f"file name does not parse as {self.example}"
        pid, cam = int(match.group("pid")), int(match.group("cam"))
        if pid in self.skip_pids:
            return None
        if not self.pids[0] <= pid <= self.pids[1]:
            return f"identity {pid} outside {self.pids[0]}..{self.pids[1]}"
        if not self.cams[0] <= cam <= self.cams[1]:
            return f"camera {cam} outside {self.cams[0]}..{self.cams[1]}"
        scene = int(match.group("scene")) if "scene" in match.re.groupindex else -1
        return Parsed(pid, cam - self.cam_base, scene)


# RGBNT100 / RGBN300 strips: 0561_c0001_006.jpg
# (official loader: regex ([-\d]+)_c([-\d]+), 1<=pid<=600, 1<=cam<=8).
VEHICLE_STRIP = NameRule(
    re.compile(r"^(?P<pid>\d+)_c(?P<cam>\d+)_\d+\.jpg$"), "VVVV_cCCCC_NNN.jpg", (1, 600), (1, 8)
)
# RGBN300 uses the same names; its identity numbering is not documented, so only the camera range is enforced.
RGBN300_STRIP = NameRule(VEHICLE_STRIP.pattern, VEHICLE_STRIP.example, (1, 9999), (1, 8))
# RGBNT201: 000028_cam1_0_02.jpg (pid = first 6 characters, camera = character 4 of camC).
RGBNT201_NAME = NameRule(
    re.compile(r"^(?P<pid>\d{6})_cam(?P<cam>\d)_\d+_\d+\.jpg$"), "PPPPPP_camC_T_NN.jpg", (1, 999), (1, 4)
)
# MSVR310: 0002_s002_v0_000.jpg (vid = [0:4], scene = [6:9], view = [11], 0-based).
MSVR310_NAME = NameRule(
    re.compile(r"^(?P<pid>\d{4})_s(?P<scene>\d{3})_v(?P<cam>\d)_\d+\.jpg$"),
    "VVVV_sSSS_vC_NNN.jpg",
    (1, 9999),
    (0, 7),
    cam_base=0,
)
# Market1501-MM: Market-1501 names 0002_c1s1_000451_03.jpg; identity -1 marks junk images (skipped).
MARKET_NAME = NameRule(
    re.compile(r"^(?P<pid>-?\d+)_c(?P<cam>\d)s\d+_\d+_\d+\.jpg$"),
    "PPPP_cCsS_FFFFFF_NN.jpg",
    (0, 1501),
    (1, 6),
    skip_pids=(-1,),
)
