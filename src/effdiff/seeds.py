"""Every seed range effdiff uses, named in one registry, so that no two purposes share noise.

How a seed becomes noise (``sampling.seeds_for`` / ``sampling.randn``): a run seed ``s`` gives
sample ``i`` its own generator ``torch.Generator().manual_seed(s * 1_000_003 + i)``, whose first
float64 draw is that sample's initial noise x_T; a stochastic solver's noise for the same sample
comes from the run seed ``s + 7919`` (``sampling.NOISE_STREAM``). So run seed ``s`` owns the
per-sample generator seeds ``[s * 1_000_003, s * 1_000_003 + n)`` and, through its solver stream,
those of ``s + 7919``; two run seeds never share a per-sample seed while n < 1_000_003. The bench's
seed 1 at n = 360 is generator seeds 1,000,003-1,000,362; reflow/DMD teacher pairs drawn with run
seed 1 and n = 2048 were 1,000,003-1,002,050: the same noise (issue 24, finding 8).

A range lives in one *space*: ``"noise"`` (run seeds passed to ``seeds_for`` / ``randn(seed=)``;
each ``expand``s to its per-sample generator seeds and solver stream) or ``"trainer"`` (seeds
given to ``torch.manual_seed`` / a trainer's own ``Generator``, which draws batches of noise, times
and data order, never a per-sample x_T). Ranges of one space must be pairwise disjoint
(``check()``; tests/test_seeds.py). Other modules register their ranges with ``register``.

    import effdiff.seeds as S
    S.get("teacher-pairs").start          # the run seed distill.reflow / distill.dmd draw pairs from
    S.check()                             # raises SeedOverlap naming the two ranges that collide
"""
from __future__ import annotations

from dataclasses import dataclass

MULT = 1_000_003          # sampling.seeds_for: sample i of run seed s draws from Generator(s * MULT + i)
NOISE_STREAM = 7919       # sampling.NOISE_STREAM: the solver-noise stream of run seed s is run seed s + 7919
MAX_N = MULT - 1          # samples per run seed below which run seeds never share a generator seed


class SeedOverlap(ValueError):
    """Two registered seed ranges share seeds."""


@dataclass(frozen=True)
class SeedRange:
    """A named, half-open range of run seeds [start, stop) in one space, with what it is for."""
    name: str
    start: int
    stop: int
    purpose: str
    space: str = "noise"
    n_max: int = 10_000            # samples drawn per run seed (per-sample generator seeds it owns)
    solver_noise: bool = True      # also owns each run seed's solver-noise stream (s + NOISE_STREAM)

    def __post_init__(self):
        if not 0 <= self.start < self.stop:
            raise ValueError(f"seed range {self.name!r}: need 0 <= start < stop, got [{self.start}, {self.stop})")
        if self.space not in SPACES:
            raise ValueError(f"seed range {self.name!r}: unknown space {self.space!r}; known: {', '.join(SPACES)}")
        if self.space == "noise" and not 1 <= self.n_max <= MAX_N:
            raise ValueError(f"seed range {self.name!r}: n_max must be in [1, {MAX_N}] so run seeds stay disjoint")

    def __contains__(self, seed: int) -> bool:
        return self.start <= seed < self.stop

    def seeds(self, k: int, offset: int = 0) -> list[int]:
        """The k run seeds start + offset, ...; raises if they leave the range."""
        if offset < 0 or self.start + offset + k > self.stop:
            raise ValueError(f"{k} seeds at offset {offset} leave {self.name!r} [{self.start}, {self.stop})")
        return list(range(self.start + offset, self.start + offset + k))

    def blocks(self) -> list[tuple[int, int]]:
        """The run-seed intervals this range owns in its space: its own, and its solver-noise stream."""
        own = [(self.start, self.stop)]
        if self.space == "noise" and self.solver_noise:
            own.append((self.start + NOISE_STREAM, self.stop + NOISE_STREAM))
        return own

    def expand(self, seed: int) -> range:
        """The per-sample generator seeds of run seed ``seed`` (noise space): [seed * MULT, seed * MULT + n_max)."""
        if seed not in self:
            raise ValueError(f"run seed {seed} is not in {self.name!r} [{self.start}, {self.stop})")
        return range(seed * MULT, seed * MULT + self.n_max)


SPACES = ("noise", "trainer")
REGISTRY: dict[str, SeedRange] = {}


def register(r: SeedRange, check_now: bool = True) -> SeedRange:
    """Add a range; with ``check_now`` an overlap with a registered range of its space raises."""
    if r.name in REGISTRY and REGISTRY[r.name] != r:
        raise ValueError(f"seed range {r.name!r} is already registered as {REGISTRY[r.name]}")
    if check_now:
        for other in REGISTRY.values():
            if other.name != r.name:
                _check_pair(r, other)
    REGISTRY[r.name] = r
    return r


def pairs_seed(training_seed: int) -> int:
    """The run seed teacher pairs of a student trained with ``training_seed`` are drawn from."""
    return TEACHER_PAIRS.seeds(1, offset=training_seed)[0]


def get(name: str) -> SeedRange:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no seed range {name!r}; known: {', '.join(REGISTRY)}") from None


def owner(seed: int, space: str = "noise") -> str | None:
    """The name of the range whose blocks hold run seed ``seed`` (solver streams included), or None."""
    for r in REGISTRY.values():
        if r.space == space and any(a <= seed < b for a, b in r.blocks()):
            return r.name
    return None


def _check_pair(a: SeedRange, b: SeedRange) -> None:
    if a.space != b.space:
        return
    for lo1, hi1 in a.blocks():
        for lo2, hi2 in b.blocks():
            if lo1 < hi2 and lo2 < hi1:
                s = max(lo1, lo2)
                raise SeedOverlap(f"seed ranges {a.name!r} [{a.start}, {a.stop}) and {b.name!r} [{b.start}, {b.stop}) "
                                  f"share run seed {s} in the {a.space!r} space (solver streams counted)")


def check(ranges=None) -> None:
    """Raise SeedOverlap if any two ranges (default: the registry) of one space overlap."""
    rs = list((ranges if ranges is not None else REGISTRY.values()))
    for i, a in enumerate(rs):
        for b in rs[i + 1:]:
            _check_pair(a, b)


def table() -> str:
    """The registry as a Markdown table (docs/evaluation.md quotes it; ``python -m effdiff.seeds --write
    docs/evaluation.md`` rewrites it there)."""
    lines = ["| name | space | run seeds | per-sample generator seeds (noise space) | purpose |", "|---|---|---|---|---|"]
    for r in sorted(REGISTRY.values(), key=lambda r: (r.space, r.start)):
        gen = (f"{r.start * MULT:,} .. {(r.stop - 1) * MULT + r.n_max - 1:,}" if r.space == "noise" else "-")
        lines.append(f"| {r.name} | {r.space} | {r.start}-{r.stop - 1} | {gen} | {r.purpose} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the ranges (noise space: run seeds passed to sampling.seeds_for / randn(seed=); a range's solver
# stream is its run seeds + 7919, so noise ranges stay below 7919 or above 7919 + their stop)
# ---------------------------------------------------------------------------------------------
BENCH = register(SeedRange(
    "bench", 0, 99, "evaluation noise of `effdiff bench --seed S` (seeds S, S+1, ...): default suites 0-2, "
    "compress 0-9, distillation fresh seeds 3-35, the compress re-run 40-49 (docs/bench/PREREG-*.md), guidance "
    "confirms 50-57, video confirms 60-72 (sparse 60-64, streaming 65-69, student 70-72)", n_max=10_000))
TIMING = register(SeedRange("timing", 99, 100, "noise of timing-only batches (python -m effdiff.bench.studies prune-depth), never scored"))
SELECTION = register(SeedRange(
    "selection", 100, 200, "choosing recipes and rows before a bench run: PTQ recipes 100-101, depth pruning + kd "
    "100-102 (bench studies depth-kd, select-ptq); plan explorations 120-199 (docs/planning.md: DP paths 120-125, "
    "longer students 126-131, e2e schedules 132-143 while fitting and 144-155 in docs/bench/plan/e2e, bf16 autocast "
    "156-161 against the reference and 162-173 against fp32 in docs/bench/plan/bf16, 6 and 8 steps 174-185 there, digits-dit's DMD student 186-199 in docs/bench/plan/students)"))
PLAN_SCREENING = register(SeedRange("plan-screening", 200, 300, "plan search: screening candidates (effdiff.plan)"))
PLAN_SELECTION = register(SeedRange("plan-selection", 300, 400, "plan search: picking among screened candidates"))
PLAN_CERTIFICATION = register(SeedRange("plan-certification", 400, 500, "plan search: certifying the picked plan, "
                                        "never used to pick; from 400 + Settings.cert_offset (searches at the "
                                        "default 400-417, plan-suite-bf16-3 424-459)"))
# the video DiT's selection and confirm ranges (docs/bench/video/, docs/bench/prereg/video-*.json)
VIDEO_RANGES = (
    ("video-sparse-selection", 700, 703,
     "choosing sparse-attention configurations of the video DiT (attention sinks, "
     "docs/bench/video/sparse-sink-selection/)"),
    ("video-sparse-confirm", 703, 708,
     "the pre-registered confirm of the picked sparse-attention configurations "
     "(docs/bench/prereg/video-sparse-sink-confirm.json), never used to pick"),
    ("video-model-confirm", 708, 713,
     "the pre-registered confirm of the continued video-dit's quality and of streaming at equal length "
     "(docs/bench/prereg/video-dit-continued-confirm.json), never used to pick"),
    ("video-sparse-confirm-2", 713, 718,
     "the pre-registered confirm of the same sparse-attention configuration on the continued video-dit "
     "(docs/bench/prereg/video-sparse-continued-confirm.json), never used to pick"),
    ("video-stream-confirm-2", 718, 723,
     "the pre-registered confirm of guided streaming with a context per branch on the continued "
     "video-dit (docs/bench/prereg/video-stream-paired-confirm.json), never used to pick"),
    ("video-stream-selection", 723, 725,
     "diagnosing and choosing streaming fixes on the video DiT (per-block label accuracy; the "
     "first-block training form), never used to confirm"),
    ("video-stream-confirm-3", 725, 730,
     "the pre-registered confirm of streaming with a first-block lookahead "
     "(docs/bench/prereg/video-stream-lookahead-confirm.json), never used to pick"),
    ("video-stream-selection-2", 735, 740,
     "choosing the lookahead's past (lookahead_past 0 vs 4) for a later confirm "
     "(docs/bench/video/lookahead-past-selection-2), never used to confirm"),
    ("video-stream-selection-3", 740, 745,
     "choosing the stream's block overlap (overlap 1 vs 2, with lookahead 16) for a later confirm "
     "(docs/bench/video/overlap-selection), never used to confirm"),
    ("video-stream-confirm-4", 745, 750,
     "the pre-registered confirm of streaming with lookahead 16 and overlap 1 "
     "(docs/bench/prereg/video-stream-overlap-confirm.json; run in the session after the one that registered it), "
     "never used to pick"),
    ("video-sparse-selection-2", 750, 753,
     "choosing the sliding-tile window of the video-dit fine-tuned under sliding-tile attention "
     "(docs/bench/video/sparse-ft-selection/RULE.md), never used to confirm"),
    ("video-sparse-confirm-3", 753, 758,
     "the pre-registered confirm of sparse attention on the video-dit fine-tuned under it "
     "(docs/bench/prereg/video-sparse-ft-confirm.json), never used to pick"),
    ("video-stream-selection-4", 758, 763,
     "choosing among continuations of video-dit for streaming at equal length (more Block Diffusion form or not) "
     "(docs/bench/video/stream-continuation-selection/RULE.md), never used to confirm"),
    ("video-stream-confirm-5", 763, 768,
     "the pre-registered confirm of streaming on the continuation cont5 (docs/bench/prereg/"
     "video-stream-cont5-confirm.json, registered after the selection on 758-762, whose own rule registered "
     "none), never used to pick"),
    ("video-sparse-selection-3", 768, 771,
     "choosing between sparse fine-tunes with long-range key frames (sliding-tile window 1 + stride 4, window 2 + "
     "sink 1; docs/bench/video/sparse-ft2-selection/RULE.md), never used to confirm"),
    ("video-sparse-confirm-4", 771, 776,
     "reserved for a confirm of a sparse fine-tune with long-range key frames; unused (the selection on 768-770 "
     "registered none), never used to pick"),
    ("video-sparse-selection-4", 776, 779,
     "choosing between sparse fine-tunes whose first sampling steps attend densely (dense_steps; "
     "docs/bench/video/sparse-ft3-selection/RULE.md), never used to confirm"),
    ("video-sparse-confirm-5", 779, 784,
     "the pre-registered confirm of the dense-first-steps sparse fine-tune that selection picks, for a later "
     "session (docs/bench/prereg/video-sparse-ft3-confirm.json), never used to pick"),
    ("video-stream-selection-5", 784, 789,
     "choosing a noisy-context continuation of video-dit and its sampling context noise for streaming at equal "
     "length (docs/bench/video/stream-context-noise-selection/RULE.md), never used to confirm"),
    ("video-stream-selection-6", 789, 794,
     "trying history guidance on the stream at equal length (docs/bench/video/stream-history-guidance-selection/"
     "RULE.md), never used to confirm"),
    ("video-stream-selection-7", 794, 799,
     "trying a wider overlap for the stream's second block (docs/bench/video/stream-overlap-second-selection/"
     "RULE.md), never used to confirm"),
    ("video-stream-selection-8", 799, 804,
     "choosing a continuation of video-dit trained more on two-block clips for streaming at equal length "
     "(docs/bench/video/stream-two-block-selection/RULE.md), never used to confirm"),
    ("video-stream-confirm-6", 804, 809,
     "the pre-registered confirm of streaming on the two-block continuation tb5 (docs/bench/prereg/"
     "video-stream-tb5-confirm.json, called for by the selection on 799-803), never used to pick"),
    ("video-sparse-selection-5", 809, 812,
     "choosing how to sample the fine-tune under Sparse VideoGen's spatial/temporal heads (docs/bench/video/"
     "sparse-svg-selection/RULE.md), never used to confirm"),
    ("video-sparse-confirm-6", 812, 817,
     "reserved for a confirm of the sparse-videogen fine-tune; unused (the selection on 809-811 registered none), "
     "never used to pick"),
    ("video-stream-selection-9", 817, 822,
     "choosing the second streamed block's guidance scale (docs/bench/video/stream-scale-second-selection/RULE.md), "
     "never used to confirm"),
    ("video-stream-confirm-7", 822, 827,
     "the pre-registered confirm of the second block at guidance 6 (docs/bench/prereg/"
     "video-stream-scale-second-confirm.json, called for by the selection on 817-821), never used to pick"),
    ("video-student-confirm-2", 827, 830,
     "reserved for the confirm of a consistency-distilled video student; unused (cd-ddim missed its scoring rule on "
     "seeds 0-2, docs/bench/video/student/cd-ddim/RULE.md), never used to pick"),
    ("video-sparse-confirm-7", 830, 835,
     "the pre-registered confirm of the window-2 + sink-1 sparse fine-tune with motion judged against real clips "
     "(docs/bench/prereg/video-sparse-motion-confirm.json), never used to pick"),
    ("video-stream-selection-10", 835, 841,
     "835: a one-seed exploration of streaming at 32 frames and of lookahead_blocks (docs/bench/video/stream-32/); "
     "836-840: choosing whether the stream with two lookahead blocks goes to a 32-frame confirm (docs/bench/video/"
     "stream-32/RULE.md), never used to confirm"),
    ("video-stream-confirm-8", 841, 846,
     "the pre-registered confirm of streaming at 32 frames with two lookahead blocks (docs/bench/prereg/"
     "video-stream-32-confirm.json, called for by the selection on 836-840), never used to pick"),
    ("video-sparse-selection-6", 846, 850,
     "846: a one-seed exploration of where the sparse stream jitters (docs/bench/video/sparse-jitter/); 847-849: "
     "choosing a sparse configuration against that jitter (docs/bench/video/sparse-jitter/RULE.md), never used to "
     "confirm"),
    ("video-sparse-confirm-8", 850, 855,
     "reserved for the confirm called for by the selection on 847-849; unused (that selection registered none), never "
     "used to pick"),
    ("video-sparse-selection-7", 855, 858,
     "choosing whether a longer sparse fine-tune goes to a confirm (docs/bench/video/sparse-ft4-selection/RULE.md), "
     "never used to confirm"),
    ("video-sparse-confirm-9", 858, 863,
     "the pre-registered confirm of the longer sparse fine-tune (docs/bench/prereg/video-sparse-ft4-confirm.json, "
     "called for by the selection on 855-857), never used to pick"),
    ("video-sparse-selection-8", 863, 866,
     "choosing between sparse fine-tunes with one dense (global) layer among sliding-tile layers (docs/bench/video/"
     "sparse-global-selection/RULE.md), never used to confirm"),
    ("video-sparse-confirm-10", 866, 871,
     "reserved for the confirm that the selection on 863-865 may call for; unused (that selection registered none), "
     "never used to pick"),
    ("video-sparse-selection-9", 871, 874,
     "choosing between sparse fine-tunes distilled from the dense video-dit (docs/bench/video/sparse-distill-selection/"
     "RULE.md), never used to confirm"),
    ("video-sparse-confirm-11", 874, 879,
     "reserved for the confirm that the selection on 871-873 may call for; unused (that selection registered none), "
     "never used to pick"),
    ("video-sparse-selection-10", 879, 882,
     "choosing between sparse fine-tunes with one-sided windows (more frames back than ahead; docs/bench/video/"
     "sparse-ahead-selection/RULE.md), never used to confirm"),
    ("video-sparse-confirm-12", 882, 887,
     "reserved for the confirm that the selection on 879-881 may call for, never used to pick"),
    ("video-sparse-selection-11", 887, 890,
     "choosing between sparse fine-tunes that keep a global path: pooled far frames (NSA's compressed branch) or one "
     "dense head per layer (DuoAttention; docs/bench/video/sparse-global-path-selection/RULE.md), never used to confirm"),
    ("video-sparse-confirm-13", 890, 895,
     "reserved for the confirm that the selection on 887-889 may call for, never used to pick"),
    ("video-stream-explore-11", 900, 901,
     "a one-seed exploration of an 8-frame lookahead at 32 frames (docs/bench/video/stream-32-lookahead8/), never "
     "used to confirm"),
    ("video-stream-64-confirm", 895, 900,
     "the zoo's default stream options against the full sequence at 64 frames, registered without a selection (the "
     "options are fixed: the defaults since the 32-frame confirm; docs/bench/prereg/video-stream-64-confirm.json), "
     "never used to pick"),
    ("video-stream-explore-12", 901, 902,
     "a one-seed exploration of a 12-frame lookahead at 32 frames (docs/bench/video/stream-32-lookahead12/), never "
     "used to confirm"),
    ("video-stream-explore-13", 902, 903,
     "a one-seed exploration of the lookahead solve in fewer steps at 32 frames (lookahead_steps; docs/bench/video/"
     "stream-32-lookahead-steps/), never used to confirm"),
    ("video-stream-32-s8-confirm", 903, 908,
     "the default stream with its lookahead solve in 8 steps against the full sequence at 32 frames, registered after "
     "the one-seed exploration on 902 (docs/bench/prereg/video-stream-32-s8-confirm.json), never used to pick"),
    ("video-stream-explore-14", 908, 909,
     "a one-seed diagnostic of where the stream's extra acceleration is at 32 frames (docs/bench/video/stream-jitter/), "
     "never used to confirm"),
    ("video-stream-explore-15", 909, 910,
     "a one-seed exploration of carrying each streamed block's first frame from the previous solve (carry; docs/bench/"
     "video/stream-carry/), never used to confirm"),
    ("video-stream-selection-12", 910, 915,
     "choosing whether the stream without an overlap frame (lookahead 16 in 8 steps, two kept blocks) qualifies for a "
     "confirm at 32 and 64 frames (docs/bench/video/stream-overlap0-selection/RULE.md), never used to confirm"),
    ("video-stream-confirm-12", 915, 920,
     "the 32-frame confirm that the selection on 910-914 called for (the stream without an overlap frame; docs/bench/"
     "prereg/video-stream-32-o0-confirm.json), never used to pick"),
    ("video-stream-explore-16", 920, 925,
     "a five-seed diagnostic at 32 frames: the stream without an overlap frame against the same streamed blocks "
     "sampled on the full solve's own blocks (teacher-forced; docs/bench/video/stream-32-teacher/), never used to "
     "confirm"),
    ("video-stream-selection-13", 925, 930,
     "choosing whether a noisy-context continuation (Diffusion Forcing) narrows the stream's label loss at 32 frames "
     "without an overlap frame (docs/bench/video/stream-context-noise-32-selection/RULE.md), never used to confirm"),
    ("video-stream-explore-17", 930, 932,
     "a two-seed exploration of guiding the streamed blocks harder at 32 frames (scale_blocks; docs/bench/video/"
     "stream-32-scale-blocks/), never used to confirm"),
    ("video-stream-explore-18", 932, 937,
     "five more seeds of the teacher-forced diagnostic at 32 frames (docs/bench/video/stream-32-teacher/), pooled with "
     "920-924 to resolve the loss a perfect context leaves, never used to confirm"),
)
for _name, _start, _stop, _purpose in VIDEO_RANGES:
    register(SeedRange(_name, _start, _stop, _purpose))
PLAN_CERTIFICATION_2 = register(SeedRange(
    "plan-certification-2", 3000, 3200, "plan search: a second certification range, for registered runs that need more "
    "fresh seeds than plan-certification has left (Settings.cert_range; never used to pick; plan-suite-power-4 "
    "3000-3071, plan-suite-students-5 3072-3143)"))
PLAN_VERIFICATION_2 = register(SeedRange(
    "plan-verification-2", 3200, 3400, "plan verify: a second verification range (effdiff plan verify --range), "
    "for plans certified after plan-verification 500-599 was used up (plan-suite-power-4's plans: 3200-3295; plan-suite-students-5's: 3296-3343; plan-suite-students-6's: 3344-3367)"))
STUDENT_SELECTION = register(SeedRange(
    "student-selection", 3400, 3500, "developing and choosing distilled students against a plan's measure, never "
    "used to certify (docs/bench/plan/students/kd.py: the KD students of digits-unet and digits-dit, 3400-3411; digits-unet's continued 2-step ones, 3412-3447)"))
PLAN_CERTIFICATION_3 = register(SeedRange(
    "plan-certification-3", 3500, 3700, "plan search: a third certification range, for registered runs after "
    "plan-certification-2 had too few seeds left for a 72-seed certificate with its extension (Settings.cert_range; "
    "never used to pick; plan-suite-students-6 3500-3571)"))
# the ranges a plan certifies on (Settings.cert_range) and is verified on (plan verify --range); plan-verification
# itself is registered by effdiff.plan.runs
PLAN_CERTIFICATION_RANGES = ("plan-certification", "plan-certification-2", "plan-certification-3")
PLAN_VERIFICATION_RANGES = ("plan-verification", "plan-verification-2")
FRESH = register(SeedRange("fresh", 1000, 1100, "re-scoring picked configurations on seeds never used to pick "
                           "(bench/solvers.py: seed + 1000)"))
FRESH_2 = register(SeedRange("fresh-2", 2000, 2010, "a follow-up's fresh seeds when its run already started on fresh "
                             "seeds (seed + 1000 twice: the solvers fresh-CI rerun, 2000-2002), and the seed-spread "
                             "check of docs/evaluation.md; stops at 2010 (run seed 2081's solver stream is 10000)"))
KNOWLEDGE_BASE = register(SeedRange("knowledge-base", 10_000, 10_001, "retrieval knowledge bases: the stored "
                                    "trajectories (bench/retrieval.py, KnowledgeBase.build seed 10000)"))
KB_QUERIES = register(SeedRange("knowledge-base-init", 20_000, 20_001, "retrieval: the stored samples' start noise "
                                "for retrieval-guided initialization (bench/retrieval.py)"))
CALIBRATION = register(SeedRange("calibration", 12_345, 12_346, "calibration / importance / pruning-selection "
                                 "batches of compress and caching rows (32 samples, seed 12345)"))
TEACHER_PAIRS = register(SeedRange("teacher-pairs", 30_000, 30_100, "teacher (noise, sample) pairs for reflow and "
                                   "DMD's regression loss: run seed 30000 + the student's training seed", n_max=100_000))
ROUTERS = register(SeedRange("learned-routers", 40_000, 40_100, "teacher trajectories that train Learning-to-Cache "
                             "routers (40000; router evaluation 40001) and DeeDiff exit heads (40002); they drew "
                             "the bench's run seeds 0/1 before issue 24"))
TRAINING = register(SeedRange("training", 0, 1000, "training seeds: torch.manual_seed and the trainer's Generator "
                              "(batches of noise, times, data order; never a per-sample x_T)", space="trainer"))
BUILTIN = tuple(REGISTRY)      # the ranges above; other modules' register() calls come after


def write_table(path) -> None:
    """Replace the registry's table in the Markdown file ``path`` (the block of lines from its header row) by
    ``table()``. (No effdiff imports here: this is a base module; hence no ``io.atomic_write``.)"""
    import os
    from pathlib import Path
    lines = Path(path).read_text().splitlines(keepends=True)
    header = table().splitlines()[0]
    i = next((k for k, line in enumerate(lines) if line.startswith(header)), None)
    if i is None:
        raise ValueError(f"{path}: no seed-range table (a line starting {header!r})")
    j = i
    while j < len(lines) and lines[j].startswith("|"):
        j += 1
    lines[i:j] = [line + "\n" for line in table().splitlines()]
    tmp = Path(f"{path}.tmp")                     # atomic: a reader sees the old file or the new one
    tmp.write_text("".join(lines))
    os.replace(tmp, path)


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] == ["--write"] and len(sys.argv) == 3:
        write_table(sys.argv[2])
    elif len(sys.argv) == 1:
        print(table())
    else:
        raise SystemExit("usage: python -m effdiff.seeds [--write DOC.md]")
