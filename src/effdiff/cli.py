"""The command line: ``effdiff train | sample | bench | solvers | zoo | report | schedules | tables | plan``.

Arguments are checked before any compute (ranges in the argparse types, output locations with
``io.check_writable``). Every error effdiff raises on purpose ends as one ``effdiff CMD: error:
...`` line on stderr and exit status 2; an exception from inside a library is a bug and keeps
its traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
MAX_STEPS = 10_000        # sampling steps (the discrete zoo models have 1000 noise levels)
MAX_SAMPLES = 10_000      # images per `sample` grid / bench configuration
MAX_SEED = 2 ** 63
MAX_TRAIN_STEPS = 10_000_000
MAX_GUIDANCE = 1_000.0
MAX_BATCH = 65_536


def _ranged_int(lo: int, hi: int | None = None):
    """An argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {v}")
        return v
    parse.__name__ = "integer"
    return parse


positive = _ranged_int(1)
seed_type = _ranged_int(0, MAX_SEED - 1)


def guidance_type(text: str) -> float:
    """An argparse type: a finite guidance scale w with |w| <= MAX_GUIDANCE."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(v) and abs(v) <= MAX_GUIDANCE):
        raise argparse.ArgumentTypeError(f"must be finite and in [-{MAX_GUIDANCE}, {MAX_GUIDANCE}], got {text!r}")
    return v


def model_list(text: str) -> list[str]:
    """An argparse type: comma-separated model names, at least one (an empty shell variable is an error,
    never the default models)."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"names no model, got {text!r} (leave --models out for the defaults)")
    return names


def class_list(text: str) -> list[int]:
    """An argparse type: comma-separated non-negative class labels."""
    try:
        labels = [int(c) for c in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(c < 0 for c in labels):
        raise argparse.ArgumentTypeError(f"class labels must be >= 0, got {text!r}")
    return labels


def _device(a):
    """``--device``: checked before any work (CUDA asked for and absent: one-line error)."""
    from .device import resolve
    return resolve(getattr(a, "device", None) or "cpu")


def _train(a):
    from .recipes import train_preset
    device = _device(a)
    path = train_preset(a.preset, a.out or f"runs/{a.preset}", resume=a.resume, overwrite=a.overwrite,
                        progress=not a.quiet, device=device, steps=a.steps, seed=a.seed, batch_size=a.batch_size)
    if path is None:                          # a data-parallel rank that does not write
        return
    from .checkpoint import files
    meta = json.loads(files(path)[1].read_text())
    print(f"wrote {path}.safetensors ({meta['card']['steps']} steps, {meta['card']['wall_time_s']} s)")
    if meta["card"]["metrics"]:
        print("metrics:", json.dumps(meta["card"]["metrics"]))


def _diffusion_card(name: str) -> dict:
    """The zoo card of ``name``, which must be a diffusion model."""
    from . import zoo
    card = zoo.card(name)
    if card.get("task") != "diffusion":
        sampleable = [m for m in zoo.names() if zoo.card(m).get("task") == "diffusion"]
        raise ValueError(f"{name!r} is a {card.get('task')} model, not a diffusion model; "
                         f"the diffusion models are: {', '.join(sampleable)}")
    return card


def _labels(classes: list[int] | None, n: int, num_classes: int, model: str):
    from .data import class_labels
    return class_labels(n, num_classes, classes, model)


def check_sample(model: str, out, solver: str, n: int, classes: list[int] | None = None, also=()):
    """What every sampling command checks before any compute (``effdiff sample`` and ``python -m
    effdiff.distributed sample``): a diffusion model, an image file name ``out`` and the other outputs
    ``also`` writable (and distinct), a known solver, class labels that exist. Returns (card, labels)."""
    import effdiff as ed
    from .io import check_writable
    from .viz import image_format
    card = _diffusion_card(model)
    image_format(out)
    for path in (out, *also):
        check_writable(path)
    if any(Path(p).resolve() == Path(out).resolve() for p in also):
        raise ValueError(f"every output needs its own file; {out} is given twice")
    ed.solvers.get(solver)                   # an unknown name: a KeyError naming the known solvers
    return card, _labels(classes, n, card.get("num_classes", 0), model)


def _zoo_file(spec: str | None, weighted: bool = False) -> str | None:
    """A zoo name where a file is expected (``--lora NAME[:W]``, ``--control-model NAME``) -> its shipped
    file stem; anything else unchanged (an existing file of that name wins)."""
    if spec is None:
        return None
    from . import assets
    name, sep, w = spec.rpartition(":") if weighted and ":" in spec else (spec, "", "")
    if name in assets.names() and not Path(name).exists() and not Path(f"{name}.safetensors").exists():
        return f"{assets.path(name)}{sep}{w}"
    return spec


def _adapters(a):
    """LoRA files and a control model attached to the loaded model (``--lora``, ``--control``)."""
    from .finetune.cli import sample_denoiser
    loras = [_zoo_file(x, weighted=True) for x in a.lora]
    return lambda den: sample_denoiser(den, loras, a.control, _zoo_file(a.control_model), a.condition, a.n,
                                       check_base=not a.no_check_base)


SAMPLE_DEFAULTS = {"solver": "dpmpp-2m", "schedule": "logsnr", "steps": 10, "guidance": 1.0}


def _sample_spec(a, den):
    """The composition to sample: ``--plan FILE``, else solver/schedule/steps/guidance plus ``--use``."""
    from .plan.spec import Spec
    from .plan.use import as_spec
    given = {k: getattr(a, k) for k in SAMPLE_DEFAULTS if getattr(a, k) is not None}
    if a.plan:
        if given or a.use:
            raise ValueError(f"--plan decides solver, schedule, steps, guidance and techniques; drop "
                             f"{', '.join(f'--{k}' for k in [*given, *(['use'] if a.use else [])])}")
        return as_spec(a.plan, den)
    return Spec(**{**SAMPLE_DEFAULTS, **given}).use(*a.use)


def _student_note(a, den, spec) -> str | None:
    """What a distilled student does instead of a different solver / step count asked for."""
    from .distill.student import Student
    if not isinstance(den, Student):
        return None
    asked = [f"--{k} {getattr(a, k)}" for k in ("solver", "steps", "schedule") if getattr(a, k) is not None]
    if not asked:
        return None
    return (f"note: {a.model} is a {den.spec.steps}-step distilled student: it samples on its own grid with "
            f"{den.spec.solver} ({den.spec.steps} steps); {' '.join(asked)} ignored")


MAX_FRAMES = 1024            # frames per clip of `sample` on a video model


def _stream_options(items: list[str]) -> dict:
    """``--stream KEY=VALUE`` (repeatable) -> generate_stream's options, typed and checked by name."""
    from .video.sampling import STREAM_OPTIONS
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in STREAM_OPTIONS:
            raise ValueError(f"--stream {item!r}: expected KEY=VALUE with KEY one of {', '.join(STREAM_OPTIONS)}")
        try:
            out[key] = STREAM_OPTIONS[key](value)
        except ValueError:
            raise ValueError(f"--stream {item!r}: {key} takes a {STREAM_OPTIONS[key].__name__}") from None
    return out


def _sample_video(a, card: dict):
    """``effdiff sample`` on a video model: ``--n`` clips of ``--frames`` frames, streamed block by block (each
    block reported as it is out) where the model streams, else one full-sequence solve (``--mode``); a frame
    strip at ``--out`` (PNG, one clip per row) and the clips as one GIF next to it."""
    import time
    import effdiff as ed
    from .io import check_writable
    from .video.sampling import SCHEDULE, sigmas
    from .video.viz import save_gif, save_strip
    image_only = [f"--{k.replace('_', '-')}" for k in ("schedule", "plan", "lora", "control", "control_model", "use")
                  if getattr(a, k)]
    if image_only:
        raise ValueError(f"{a.model} is a video model: {', '.join(image_only)} apply to image models")
    if _device(a).type != "cpu":
        raise ValueError(f"--device {a.device}: video sampling runs on the CPU; drop --device")
    out = Path(a.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {a.out}: a video model writes a PNG frame strip (and a GIF next to it); name a .png")
    gif = out.with_suffix(".gif")
    for path in (out, gif):
        check_writable(path)
    n = a.n or 8
    labels = _labels(a.classes, n, card.get("num_classes", 0), a.model)
    options = _stream_options(a.stream)
    student = "student" in card
    from .video import student as video_student
    vm = video_student.load(a.model) if student else ed.zoo.load(a.model)
    streams = not student and hasattr(vm.den.net, "stream_step")
    mode = a.mode or ("stream" if streams else "full")
    if mode == "stream" and not streams:
        raise ValueError(f"{a.model} generates full sequences only (it has no block-causal stream); use --mode full")
    if options and mode != "stream":
        raise ValueError("--stream options apply to --mode stream")
    frames = a.frames or 16
    noise = vm.noise(n, frames, a.seed)
    start = time.perf_counter()
    if student:
        ignored = [f"--{k} {getattr(a, k)}" for k in ("solver", "steps", "guidance") if getattr(a, k) is not None]
        if ignored and not a.quiet:
            print(f"note: {a.model} is a distilled student: it samples on its own grid; {' '.join(ignored)} ignored")
        z, how = vm.sample(noise, labels, seed=a.seed), f"its own {vm.student.spec.steps}-step grid"
    else:
        solver, steps = a.solver or "dpmpp-2m", a.steps or 12
        ed.solvers.get(solver)
        scale = a.guidance if a.guidance is not None else card["card"].get("metrics", {}).get("guidance", 1.0)
        kw = dict(options)
        if mode == "stream" and not a.quiet:
            kw["on_block"] = lambda s, zb: print(f"  frames {s}-{s + zb.shape[2] - 1} out after "
                                                 f"{time.perf_counter() - start:.1f} s", flush=True)
        z = vm.generate(noise, sigmas(steps), solver, labels, mode=mode, scale=scale, **kw)
        how = f"{solver} {steps} steps on {SCHEDULE}, guidance {scale:g}" + "".join(
            f", {k} {v}" for k, v in (vm.stream_kwargs(**options) if mode == "stream" else {}).items())
    x = vm.decode(z)
    save_strip(x, out)
    save_gif(x, gif)
    print(f"wrote {out} and {gif}: {n} clips of {frames} frames, {a.model}, {mode if not student else 'full'}, "
          f"{how} ({time.perf_counter() - start:.1f} s)")


def _sample(a):
    import effdiff as ed
    from . import zoo
    from .recipes import sample_model
    from .viz import save_grid
    card = zoo.card(a.model)
    if card.get("task") == "video":
        return _sample_video(a, card)
    for k in ("frames", "mode"):
        if getattr(a, k) is not None:
            raise ValueError(f"--{k} applies to video models; {a.model} is an image model")
    if a.stream:
        raise ValueError(f"--stream applies to video models; {a.model} is an image model")
    a.n = a.n or 100
    device = _device(a)
    if a.no_check_base and not (a.lora or a.control_model):
        raise ValueError("--no-check-base applies to --lora / --control-model files; none given")
    _, cond = check_sample(a.model, a.out, a.solver or SAMPLE_DEFAULTS["solver"], a.n, a.classes)
    den = ed.zoo.load(a.model)               # on the CPU: techniques and adapters attach there, then all moves
    spec = _sample_spec(a, den)
    note = _student_note(a, den, spec)
    if note and not a.quiet:
        print(note)
    wrap = _adapters(a) if a.lora or a.control or a.control_model else None
    with spec.apply(den) as handle:
        out = sample_model(den, a.n, spec.solver, spec.schedule, spec.steps, spec.guidance, a.seed, cond, wrap,
                           progress=not a.quiet, guide=ed.guided, device=device)
    path = save_grid(out.result.x, a.out, nrow=10)
    used = "".join(f" + {name}" for name, _ in spec.techniques)
    print(f"wrote {path}: {a.n} samples, {a.model}, {out.solver} on {out.schedule}{used}, {out.result.nfe} NFE, "
          f"guidance {spec.guidance}")
    if spec.techniques and not a.quiet:
        stats = handle.stats if isinstance(handle.stats, dict) else {spec.techniques[0][0]: handle.stats}
        for name, st in stats.items():
            print(f"  {name}: {st.as_dict() if hasattr(st, 'as_dict') else st}")


def _bench(a):
    from .bench import run
    from .bench.runner import suite, table
    from .io import check_writable
    from .bench.config import RUNNER_SUITES
    device = _device(a)                      # an unavailable device: an error before any work
    cpu_only = "--prereg" if a.prereg else "--study" if a.study is not None else \
        f"--suite {a.suite}" if a.suite in RUNNER_SUITES else None
    if device.type != "cpu" and cpu_only:
        from .device import DeviceError
        raise DeviceError(f"--device {a.device}: {cpu_only} runs on the CPU; drop --device")
    if a.prereg:
        return _bench_prereg(a)
    if a.study is not None:
        return _study(a.study)
    if a.suite in RUNNER_SUITES:
        return _runner_suite(a, RUNNER_SUITES[a.suite])
    models = a.models
    for m in models or []:
        _diffusion_card(m)
    suite(a.suite, models or [])             # an unknown suite fails here, before any work
    if a.out:
        check_writable(a.out, directory=True)
    if a.seeds == 1 and not a.quiet:
        print("note: --seeds 1: one seed gives no confidence interval; FD changes are single-seed differences")
    res = run(models=models, suite_name=a.suite, quick=a.quick, out=a.out, n_samples=a.n, seed=a.seed,
              guidance=a.guidance, repeats=a.repeats, threads=a.threads, n_seeds=a.seeds, verbose=not a.quiet,
              use_cache=not a.no_cache, device=device)
    if not a.quiet:
        print()
        print(table(res))
    for note in res.get("cache", []):
        print(f"cache: {note}")
    if a.out:
        print(f"wrote {a.out}/results.json, {a.out}/report.html, {a.out}/pareto.png and sample grids in "
              f"{a.out}/grids/ ({res['wall_time_s']:.0f} s)")


def _runner_suite(a, module: str):
    """``bench --suite video``: a suite with its own runner; the generic flags it understands are passed on
    (--out, --quick, --n, --threads, --repeats, --guidance), the others refused in one line."""
    import importlib
    from .errors import EffdiffError
    given = [f"--{k.replace('_', '-')}" for k, d in (("models", None), ("seed", 0), ("no_cache", False))
             if getattr(a, k) != d] + (["--seeds"] if a.seeds not in (None, 3) else [])
    if given:
        raise EffdiffError(f"--suite {a.suite}: {', '.join(given)} do not apply to this suite's runner; its own "
                           f"options: python -m effdiff.bench.{module} --help")
    argv = [f for k, flag in (("out", "--out"), ("n", "--n"), ("threads", "--threads"), ("repeats", "--repeats"),
                              ("guidance", "--guidance")) if getattr(a, k, None) is not None
            for f in (flag, str(getattr(a, k)))] + (["--quick"] if a.quick else [])
    importlib.import_module(f".bench.{module}", __package__).main(argv)


def _study(argv: list[str]):
    """``bench --study NAME [ARGS]``: a registered bench study (``python -m effdiff.bench.studies`` lists them)."""
    from .bench import studies
    if not argv:
        studies.main([])
        return
    studies.get(argv[0])(argv[1:])           # an unknown study: a KeyError naming the known ones


def _bench_prereg(a):
    """``bench --prereg FILE``: the committed file names suite, models, rows and seeds (issue 24)."""
    from .bench.prereg import PreregError, run_file
    from .bench.runner import table
    if not a.out:
        raise PreregError("--prereg needs --out (the results.json that records the registration)")
    given = [f"--{k}" for k in ("models", "n", "seeds", "quick") if getattr(a, k)] + \
        [f"--{k}" for k, d in (("suite", "default"), ("seed", 0)) if getattr(a, k) != d]
    if given:
        raise PreregError(f"--prereg: the file decides suite, models, rows, n and seeds; drop {', '.join(given)}")
    print(table(run_file(a.prereg, a.out)))


def _zoo(a):
    from .zoo.table import show, table
    print(show(a.name) if a.name else table())


def _solvers(a):
    import inspect
    from . import solvers
    for name in solvers.names():
        sol = solvers.get(name)
        doc = (inspect.getdoc(sol.fn) or "").split("\n\n")[0].replace("\n", " ")
        preset = f" [{', '.join(f'{k}={v}' for k, v in sol.defaults.items())}]" if sol.defaults else ""
        print(f"{name:16s} {doc}{preset}")


def _tables(a):
    """``effdiff tables --check|--write``: ``python -m effdiff.bench.tables`` (exit 1 when a block differs)."""
    from .bench import tables
    try:
        tables.main(["--check" if a.check else "--write"])
    except SystemExit as e:                  # --check: 1 when a block differs
        return e.code
    return 0


def _report(a):
    from .report import report_main
    report_main(a)


def _schedules_fit(a):
    from .recipes import fit_schedule
    from .timesteps import load_schedule
    _diffusion_card(a.model)                 # a classifier or autoencoder has no schedule to fit
    path = fit_schedule(a.model, a.out, a.method, a.steps, a.seed, a.samples, a.solver, progress=not a.quiet)
    sig, meta = load_schedule(path, with_meta=True)
    if a.quiet:
        print(f"wrote {path}")
        return
    print(f"wrote {path}\n sigmas: {[round(float(s), 5) for s in sig]}\n info: {meta['info']}")
    print(f"use it as: ed.timesteps.get({str(path)!r}, n, process)")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every default (flags and options without a fixed default say theirs in words)."""

    def _get_help_string(self, action):
        d = action.default
        said = any(t in (action.help or "") for t in ("(default", "[default"))
        if d is None or d is False or d == [] or d == argparse.SUPPRESS or said:
            return action.help
        return super()._get_help_string(action)


def _schedules_help() -> str:
    from .timesteps import SCHEDULES
    return (f"{', '.join(SCHEDULES)}, full (every step of a discrete table), ays:MODEL / dp:MODEL / "
            "e2e:MODEL-SOLVER-STEPS (a fitted schedule shipped for a zoo model) or a schedule .json file")


def _presets_help() -> str:
    from .training.presets import PRESETS
    return (f"training presets: {', '.join(PRESETS)}; fine-tuning, distillation and model-guidance presets too "
            "(an unknown name lists them all)")


def _suites() -> list[str]:
    from .bench.config import RUNNER_SUITES, SUITE_MODULES, SUITES
    return sorted({*SUITES, *SUITE_MODULES, *RUNNER_SUITES})


def _quiet(p):
    p.add_argument("--quiet", action="store_true", help="no progress bars or notes; the result lines only")


def _device_arg(p):
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (checked before any work)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = argparse.ArgumentParser(prog="effdiff", description="Efficient diffusion models, measured.",
                                formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"effdiff {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a preset", formatter_class=_Help)
    t.add_argument("--preset", required=True, help=_presets_help())
    t.add_argument("--out", help="run directory (default runs/PRESET); must be empty unless --resume/--overwrite")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run directory's run from its last checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="delete the run directory's run and start over")
    t.add_argument("--steps", type=_ranged_int(1, MAX_TRAIN_STEPS), help="training steps (default: the preset's)")
    t.add_argument("--seed", type=seed_type, help="training seed (default: the preset's)")
    t.add_argument("--batch-size", type=_ranged_int(1, MAX_BATCH), help="batch size (default: the preset's)")
    _device_arg(t)
    _quiet(t)
    t.set_defaults(fn=_train)

    s = sub.add_parser("sample", help="sample a zoo model into a PNG grid", formatter_class=_Help)
    s.add_argument("--model", default="digits-unet", help="a zoo diffusion model (effdiff zoo lists them)")
    s.add_argument("--solver", help=f"a registered solver (effdiff solvers) [default: {SAMPLE_DEFAULTS['solver']}]")
    s.add_argument("--schedule", help=f"{_schedules_help()} [default: {SAMPLE_DEFAULTS['schedule']}]")
    s.add_argument("--steps", type=_ranged_int(1, MAX_STEPS), help=f"sampling steps [default: {SAMPLE_DEFAULTS['steps']}]")
    s.add_argument("--guidance", type=guidance_type, help=f"classifier-free guidance scale [default: {SAMPLE_DEFAULTS['guidance']}]")
    s.add_argument("--use", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                   help="apply a registered technique (repeatable, in order), e.g. deepcache:interval=3, int8, "
                        "fora:interval=2; effdiff.techniques.names() lists them")
    s.add_argument("--plan", metavar="FILE", help="a plan or spec file (effdiff plan writes one): its solver, "
                   "schedule, steps, guidance and techniques")
    s.add_argument("--seed", type=seed_type, default=0, help="noise seed (same seed, same samples)")
    s.add_argument("--classes", type=class_list, help="comma-separated class labels, cycled (default 0..9)")
    s.add_argument("--n", type=_ranged_int(1, MAX_SAMPLES), help="number of samples (default: 100 images, 8 clips)")
    s.add_argument("--out", default="samples.png", help="the PNG grid to write")
    s.add_argument("--lora", action="append", default=[], metavar="FILE[:WEIGHT]",
                   help="attach a LoRA adapter file or zoo name, e.g. digits-unet-lora-thick (repeatable; weight 1)")
    s.add_argument("--control", metavar="IMAGE", help="condition image; its --condition map drives --control-model")
    s.add_argument("--control-model", metavar="FILE",
                   help="a ControlNet / ControlNet-XS / T2I-Adapter file or zoo name")
    s.add_argument("--condition", default="edges", choices=["edges", "mask", "sketch"], help="the control map")
    s.add_argument("--no-check-base", action="store_true", help="attach --lora / --control-model files trained on "
                   "other base weights (check_base=False; they are refused by default)")
    s.add_argument("--frames", type=_ranged_int(1, MAX_FRAMES), help="video models: frames per clip (default 16)")
    s.add_argument("--mode", choices=["stream", "full"], help="video models: block by block with a KV cache "
                   "(Block Diffusion; the default where the model streams) or one full-sequence solve")
    s.add_argument("--stream", action="append", default=[], metavar="KEY=VALUE", help="video models: a streaming "
                   "option (repeatable), e.g. lookahead=16, overlap=1, history_guidance=1 (docs/video.md)")
    _device_arg(s)
    _quiet(s)
    s.set_defaults(fn=_sample)

    b = sub.add_parser("bench", help="benchmark sampling configurations on the zoo models", formatter_class=_Help)
    b.add_argument("--suite", default="default", choices=_suites(), metavar="SUITE",
                   help=f"one of: {', '.join(_suites())}")
    b.add_argument("--models", type=model_list, help="comma-separated zoo models (default: the suite's; "
                   "digits-unet,digits-dit for the default suite)")
    b.add_argument("--quick", action="store_true", help="a smoke run in under a minute (1 seed, 100 samples)")
    b.add_argument("--out", help="write results.json (as rows finish), report.html, pareto.png and sample grids here")
    b.add_argument("--n", type=_ranged_int(1, MAX_SAMPLES), help="samples per configuration and seed (default 360, quick 100)")
    b.add_argument("--seed", type=seed_type, default=0, help="the first noise seed")
    b.add_argument("--seeds", type=_ranged_int(1, 100), help="noise seeds --seed, --seed+1, ... (default 3, quick 1): "
                   "more seeds narrow the paired confidence intervals; 1 gives no interval")
    b.add_argument("--guidance", type=guidance_type, default=1.0, help="classifier-free guidance scale")
    b.add_argument("--prereg", metavar="FILE", help="run what a pre-registration FILE names; refused unless FILE is "
                   "committed to git and unchanged (effdiff.bench.prereg); its commit goes into results.json")
    b.add_argument("--repeats", type=positive, help="timed repeats per configuration (default 3, quick 1)")
    b.add_argument("--threads", type=positive, help="torch threads (default: all cores)")
    b.add_argument("--no-cache", action="store_true", help="recompute reference rows instead of reading their "
                   "scores from the cache (~/.cache/effdiff/bench-ref, $EFFDIFF_CACHE)")
    b.add_argument("--study", nargs=argparse.REMAINDER, metavar="NAME [ARGS]",
                   help="run a bench study instead of a suite (last option; no NAME: list them)")
    _device_arg(b)
    _quiet(b)
    b.set_defaults(fn=_bench)

    sv = sub.add_parser("solvers", help="list the registered solvers", formatter_class=_Help)
    sv.set_defaults(fn=_solvers)

    z = sub.add_parser("zoo", help="the shipped models as a table; effdiff zoo show NAME for one card",
                       formatter_class=_Help)
    zs = z.add_subparsers(dest="zoo_cmd")
    zshow = zs.add_parser("show", help="one model's card", formatter_class=_Help)
    zshow.add_argument("name", help="a zoo model name")
    z.set_defaults(fn=_zoo, name=None)

    r = sub.add_parser("report", help="one self-contained HTML page from a bench output folder", formatter_class=_Help)
    r.add_argument("bench_dir", help="a folder written by effdiff bench --out (it must hold results.json)")
    r.add_argument("--out", default=None, help="the HTML file (default BENCH_DIR/report.html)")
    _quiet(r)
    r.set_defaults(fn=_report)

    sc = sub.add_parser("schedules", help="fit sampling schedules (Align Your Steps, DP, e2e) for a zoo model",
                        formatter_class=_Help)
    scs = sc.add_subparsers(dest="schedules_cmd", required=True)
    f = scs.add_parser("fit", help="fit a schedule and write it as JSON where --out says", formatter_class=_Help)
    f.add_argument("--model", required=True, help="a zoo diffusion model")
    f.add_argument("--method", choices=("ays", "dp", "e2e"), default="ays",
                   help="Align Your Steps, dynamic programming, or e2e: fitted through one --solver at --steps")
    f.add_argument("--solver", help="the solver an e2e schedule is fitted for (e2e only)")
    f.add_argument("--steps", type=_ranged_int(1, 1000), default=10, help="steps of the fitted schedule")
    f.add_argument("--out", required=True, help="the .json file to write")
    f.add_argument("--seed", type=seed_type, default=0, help="seed of the fit")
    f.add_argument("--samples", type=positive, help="Monte-Carlo / reference samples")
    _quiet(f)
    f.set_defaults(fn=_schedules_fit)

    tb = sub.add_parser("tables", help="regenerate (--write) or check (--check) every generated table and value "
                        "in README, docs and zoo cards from the results files they cite", formatter_class=_Help)
    tmode = tb.add_mutually_exclusive_group(required=True)
    tmode.add_argument("--check", action="store_true", help="exit 1 naming every file whose blocks differ")
    tmode.add_argument("--write", action="store_true", help="rewrite every marked block in place")
    tb.set_defaults(fn=_tables)

    from .plan.cli import add_parser as add_plan_parser     # effdiff plan / effdiff plan verify
    add_plan_parser(sub)
    return p


def _raised_by_effdiff(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc`` is effdiff's own code (a check), not a library's."""
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    return last is not None and Path(last).resolve().is_relative_to(PACKAGE)


def user_error(exc: BaseException) -> str | None:
    """The one-line message of an error effdiff raised on purpose, or None for a bug: an ``EffdiffError``
    (CheckpointError, UnknownName, ...), an OS error naming a file, a non-finite result, or a plain
    ValueError / KeyError / TypeError / RuntimeError whose innermost frame is effdiff's own check (the
    checks that do not raise an ``EffdiffError`` yet)."""
    from .errors import EffdiffError
    if isinstance(exc, OSError):
        return f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
    if isinstance(exc, (EffdiffError, FloatingPointError)) or (
            isinstance(exc, (ValueError, KeyError, TypeError, RuntimeError)) and _raised_by_effdiff(exc)):
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        return " ".join(str(msg).split("\n"))
    return None


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:              # argparse printed usage and its error line (or --help)
        return e.code if isinstance(e.code, int) else 2
    try:
        rc = args.fn(args)
    except Exception as e:
        msg = user_error(e)
        if msg is None:
            raise
        print(f"effdiff {args.cmd}: error: {msg}", file=sys.stderr)
        return 2
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
