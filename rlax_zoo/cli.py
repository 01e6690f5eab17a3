"""The `rlax-zoo` command line: `rlax-zoo train <method> [--flags]`.

Adding a method is one entry in METHODS: its name, config dataclass, trainer builder and
flag aliases. Every config field becomes a flag with its help text and allowed range.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import NamedTuple

from diffusion.data import ImageDataError
from diffusion.ddpm import ANCESTRAL_SIGMAS, DDIM_SPACINGS
from rlax_zoo import config as config_lib
from rlax_zoo.checkpointing import CheckpointError
from rlax_zoo.envs.envpool_env import EnvError
from sequence.sysid import DataError


class Method(NamedTuple):
    config_cls: type
    build: str  # "module:function" (imported lazily so --help is fast)
    help: str
    aliases: dict
    fixed: tuple = ()  # config fields that are not flags (fixed by the subcommand)
    # for methods that are not environment loops: "module:function" taking (config,
    # run_dir=, resume=, progress=) and returning an object with .run_dir and .summary()
    driver: str | None = None


def _config(path: str):
    """A lazily imported config class ("module:Class"), so --help stays fast."""
    return lambda: _resolve(path)


METHODS = {
    "dqn": Method(
        config_cls=_config("rlax_zoo.agents.dqn:DQNConfig"),
        build="rlax_zoo.agents.dqn:make_dqn",
        help="DQN with Double Q, dueling head, prioritized replay (default on), n-step targets.",
        aliases={"env_id": "--env"},
        fixed=("method",),
    ),
    "a2c": Method(
        config_cls=_config("rlax_zoo.agents.actor_critic:A2CConfig"),
        build="rlax_zoo.agents.actor_critic:make_a2c",
        help="Synchronous advantage actor-critic (Mnih et al. 2016, Alg. S3) on vmapped envs.",
        aliases={"env_id": "--env"},
        fixed=("method",),
    ),
    "reinforce": Method(
        config_cls=_config("rlax_zoo.agents.actor_critic:ReinforceConfig"),
        build="rlax_zoo.agents.actor_critic:make_a2c",
        help="REINFORCE with a learned baseline (Williams 1992; Sutton et al. 2000).",
        aliases={"env_id": "--env"},
        fixed=("method",),
    ),
    "impala": Method(
        config_cls=_config("rlax_zoo.agents.impala:ImpalaConfig"),
        build="rlax_zoo.agents.impala:make_impala",
        help="IMPALA with V-trace (Espeholt et al. 2018): actor threads + learner, or all jitted.",
        aliases={"env_id": "--env"},
    ),
    "prssm": Method(
        config_cls=_config("sequence.prssm:PRSSMConfig"),
        build="",
        help="PR-SSM (Doerr et al. 2018): a GP state-space model fitted to a u/y CSV record.",
        aliases={},
        driver="sequence.runs:run_prssm",
    ),
    "transformer": Method(
        config_cls=_config("sequence.translate:TransformerConfig"),
        build="",
        help="The Transformer (Vaswani et al. 2017) trained to translate Multi30k En-De.",
        aliases={},
        driver="sequence.translate:run_transformer",
    ),
    "alphazero": Method(
        config_cls=_config("rlax_zoo.agents.alphazero:AlphaZeroConfig"),
        build="",
        help="AlphaZero (Silver et al. 2017, 2018): MCTS self-play on tic-tac-toe or Connect Four.",
        aliases={},
        driver="rlax_zoo.agents.alphazero:run_alphazero",
    ),
    "dreamer": Method(
        config_cls=_config("rlax_zoo.agents.dreamer:DreamerConfig"),
        build="",
        help="DreamerV3 (Hafner et al. 2023): RSSM world model, actor and critic in imagination.",
        aliases={"env_id": "--env"},
        driver="rlax_zoo.agents.dreamer:run_dreamer",
    ),
    "ddpm": Method(
        config_cls=_config("diffusion.train:DDPMConfig"),
        build="",
        help="DDPM (Ho et al. 2020): a U-Net noise predictor on an image set (MNIST-5k).",
        aliases={},
        driver="diffusion.train:run_ddpm",
    ),
    "autoencoder": Method(
        config_cls=_config("diffusion.latent:AutoencoderConfig"),
        build="",
        help="The autoencoder (E, D) of a latent diffusion model (Rombach et al. 2022).",
        aliases={},
        driver="diffusion.latent:run_autoencoder",
    ),
}
_ASYNC = {
    "async-q": ("AsyncQConfig", "Asynchronous one-step Q-learning (Mnih et al. 2016, Alg. 1)."),
    "async-sarsa": ("AsyncSarsaConfig", "Asynchronous one-step Sarsa (Mnih et al. 2016)."),
    "async-nstep-q": ("AsyncNStepQConfig", "Asynchronous n-step Q-learning (Alg. S2)."),
    "a3c": ("A3CConfig", "Asynchronous advantage actor-critic, A3C (Alg. S3), CPU threads."),
}
for _name, (_cls, _help) in _ASYNC.items():
    METHODS[_name] = Method(
        config_cls=_config(f"rlax_zoo.agents.async_methods:{_cls}"),
        build="rlax_zoo.agents.async_methods:make_async",
        help=_help + " Runs are not deterministic (thread interleaving).",
        aliases={"env_id": "--env"},
        fixed=("method",),
    )


def _resolve(path: str):
    module, name = path.split(":")
    return getattr(__import__(module, fromlist=[name]), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlax-zoo", description="Train and benchmark the methods of rlax-zoo."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="Train a method; writes a run folder.")
    methods = train.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, method in METHODS.items():
        p = methods.add_parser(
            name,
            help=method.help,
            description=method.help,
        )
        config_lib.add_arguments(p, method.config_cls(), method.aliases, skip=method.fixed)
        p.add_argument("--run-dir", default=None, help="Run folder (default: runs/<method>-...).")
        p.add_argument(
            "--resume",
            default=None,
            metavar="RUN_DIR",
            help="Continue an interrupted run from its newest checkpoint, with its own "
            "config.json; only --time-budget-s may be given with it (it is written there).",
        )
        p.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
        p.add_argument(
            "--xla-cpu-threads",
            default="auto",
            metavar="N",
            help="Threads of XLA's CPU intra-op pool: an integer, or auto (the default): 1 for "
            "vector observations and PR-SSM (small kernels run faster on one thread), every "
            "CPU for Atari frames, images, the Transformer and the threaded methods (a3c, "
            "async-*, impala), whose threads would otherwise share one XLA thread. See "
            "rlax_zoo/xla_cpu.py.",
        )
    translate = sub.add_parser(
        "translate", help="Translate sentences with a trained transformer run (one per line)."
    )
    translate.add_argument("--run", required=True, metavar="RUN_DIR", help="A transformer run.")
    translate.add_argument("text", nargs="+", help="Source sentences, one argument each.")
    translate.add_argument(
        "--beam-size", type=int, default=None, help="Beam size (default: the run's; 1: greedy)."
    )
    sample = sub.add_parser(
        "sample", help="Draw samples from a trained DDPM run; writes an image grid PNG."
    )
    sample.add_argument("--run", required=True, metavar="RUN_DIR", help="A ddpm run folder.")
    sample.add_argument("--n", type=int, default=64, help="Number of samples (default: 64).")
    sample.add_argument(
        "--sampler",
        default="ddpm",
        choices=("ddpm", "ddim"),
        help="Ancestral sampling (T network calls) or strided DDIM (default: ddpm).",
    )
    sample.add_argument("--steps", type=int, default=None, help="DDIM network calls (default: 50).")
    sample.add_argument(
        "--eta",
        type=float,
        default=None,
        help="DDIM's eta in [0, 1]: 0 deterministic (default: the run's sample_eta).",
    )
    sample.add_argument(
        "--spacing",
        default=None,
        choices=DDIM_SPACINGS,
        help="DDIM's sub-sequence of timesteps (default: the run's sample_spacing).",
    )
    sample.add_argument(
        "--rederive-eps",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="DDIM with clipping: use the eps of the clipped x0-hat, or the network's "
        "(default: the run's sample_rederive_eps).",
    )
    sample.add_argument(
        "--sigma",
        default=None,
        choices=ANCESTRAL_SIGMAS,
        help="The ancestral sampler's sigma_t^2: beta_t or the posterior variance "
        "(default: the run's sample_sigma).",
    )
    sample.add_argument(
        "--label",
        type=int,
        default=None,
        help="A class-conditional run: every sample of this class (default: each class in turn).",
    )
    sample.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="A class-conditional run: the classifier-free guidance weight w >= 0 "
        "(default: the run's guidance).",
    )
    sample.add_argument("--seed", type=int, default=0, help="Sampling seed (default: 0).")
    sample.add_argument("--out", default=None, help="PNG path (default: in the run folder).")
    disguise = sub.add_parser(
        "disguise",
        help="Disguises of a copyrighted image (Lu et al. 2024, Algorithm 1) against a trained "
        "autoencoder: look like the base images, encode like the copyrighted one.",
    )
    disguise.add_argument(
        "--autoencoder", required=True, metavar="RUN_DIR", help="A train autoencoder run."
    )
    disguise.add_argument("--copyrighted", required=True, metavar="IMG", help="PNG or .npy.")
    disguise.add_argument("--base", required=True, nargs="+", metavar="IMG", help="PNG or .npy.")
    disguise.add_argument("--out", default="disguises", help="Output folder (default: disguises).")
    disguise.add_argument("--alpha", type=float, default=0.0, help="Weight of D1 (default: 0).")
    disguise.add_argument(
        "--gamma-1", type=float, default=4 / 10**2.5, help="D1 threshold (default: PSNR 25 dB)."
    )
    disguise.add_argument(
        "--gamma-2",
        type=float,
        default=None,
        help="D2 threshold (default: a quarter of the median same-class latent distance).",
    )
    disguise.add_argument("--learning-rate", type=float, default=0.01, help="Default: 0.01.")
    disguise.add_argument("--max-steps", type=int, default=1000, help="Default: 1000.")
    disguise.add_argument(
        "--linf-radius", type=float, default=0.112, help="L-inf ball radius (<= 0: none)."
    )
    disguise.add_argument(
        "--optimizer",
        default="adam",
        choices=("adam", "sgd", "normalized"),
        help="adam (default) steps like the gradient's sign, which suits the L-inf ball; "
        "normalized takes steps of --learning-rate in L2 (for an L2 budget).",
    )
    bench = sub.add_parser(
        "bench",
        help="Run a benchmark script of benchmarks/ (a checkout's): `rlax-zoo bench` lists "
        "them, `rlax-zoo bench NAME --help` shows one's flags.",
        description="Run a script of the checkout's benchmarks/ folder with the flags that "
        "follow its name (each prints its command, machine and versions; RESULTS.md has the "
        "tables). Without a name: the list, with each script's first docstring line.",
    )
    bench.add_argument(
        "--benchmarks-dir",
        default=None,
        metavar="DIR",
        help="The folder of benchmark scripts (default: benchmarks/ beside the installed "
        "package, then ./benchmarks).",
    )
    bench.add_argument("name", nargs="?", default=None, help="A script's name, without .py.")
    bench.add_argument("script_args", nargs=argparse.REMAINDER, help="Flags for the script.")
    return parser


def benchmark_scripts(folder: str) -> dict[str, str]:
    """{name: first line of the module docstring} of every script in `folder` (read, not
    imported: a script may set XLA flags before JAX starts); {} if there is no such folder."""
    import ast

    out = {}
    for file in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        if file.endswith(".py") and not file.startswith("_"):
            with open(os.path.join(folder, file)) as f:
                try:
                    doc = ast.get_docstring(ast.parse(f.read())) or ""
                except SyntaxError as e:
                    doc = f"(does not parse: line {e.lineno}: {e.msg})"
            out[file[:-3]] = doc.splitlines()[0] if doc else ""
    return out


def run_benchmark(name: str | None, script_args: list[str], folder: str | None = None) -> int:
    """`rlax-zoo bench [NAME ARGS...]`: list the scripts, or run one in a fresh Python
    process (its own XLA flags; relative paths resolve against the current folder, as with
    `python benchmarks/NAME.py`) and return its exit status. `folder` None: benchmarks/
    beside the installed package (a checkout's), else ./benchmarks."""
    import subprocess

    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    places = (
        [folder] if folder is not None else [os.path.join(checkout, "benchmarks"), "benchmarks"]
    )
    found = next(((p, scripts) for p in places if (scripts := benchmark_scripts(p))), None)
    if found is None:
        raise config_lib.ConfigError(
            f"--benchmarks-dir: no benchmark scripts in {' or '.join(map(repr, places))}; the "
            "scripts come with a checkout of the repository, not with the installed package"
        )
    folder, scripts = found
    if name is None:
        width = max(map(len, scripts))
        for script, line in scripts.items():
            print(f"{script:<{width}}  {line}")
        return 0
    script = name.removesuffix(".py").replace("-", "_")
    if script not in scripts:
        raise config_lib.ConfigError(f"bench: unknown benchmark {name!r}; one of {sorted(scripts)}")
    process = subprocess.Popen([sys.executable, os.path.join(folder, script + ".py"), *script_args])
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            # a terminal's Ctrl-C reaches the script too: let it checkpoint and exit
            # (subprocess.call would kill it after 0.25 s)
            continue


# Methods whose steps are large array products (convolutions, attention, DreamerV3's
# imagination over 512 starts): XLA's whole pool (dreamer-iteration: one thread 0.64x of the
# pool, `benchmarks/bench_xla_threads.py`, session 32).
WIDE_METHODS = ("ddpm", "autoencoder", "transformer", "dreamer")
# Methods whose actor(-learner)s are Python threads: with a one-thread XLA pool their jitted
# calls run one after another (Pong-v5 A3C, 2 threads against 1: 1.04x, against 1.33x with
# XLA's default pool; RESULTS.md).
THREADED_METHODS = ("a3c", "async-q", "async-sarsa", "async-nstep-q", "impala")


def _env_id_of(args) -> str | None:
    """The environment id of a train command (read from the run folder when resuming)."""
    if args.resume is not None:
        try:
            return json.loads(_resumed_config_text(args)).get("env_id")
        except (TypeError, ValueError, AttributeError):
            return None  # the run loader reports a bad run folder itself
    return getattr(args, "env_id", None)


def _resumed_config_path(args) -> str:
    return os.path.join(args.resume, "config.json")


def _resumed_config_text(args) -> str | None:
    """The config.json text of the run that `--resume` names (None if unreadable)."""
    try:
        with open(_resumed_config_path(args)) as f:
            return f.read()
    except OSError:
        return None


# Config fields a flag may change when resuming: a time budget does not change what a step
# computes. Every other field (a length, a learning rate, a schedule) is the run's own.
RESUME_FIELDS = ("time_budget_s",)


def apply_resume_flags(cls, args) -> None:
    """With `--resume`, write the flags of RESUME_FIELDS into the run's config.json (so the run
    folder records them) and refuse any other config flag by name: a resumed run keeps its own
    config, and silently ignoring a flag would train something the user did not ask for."""
    given = [f.name for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None]
    refused = [n for n in given if n not in RESUME_FIELDS]
    if refused:
        flags = ", ".join("--" + n.replace("_", "-") for n in refused)
        allowed = ", ".join("--" + n.replace("_", "-") for n in RESUME_FIELDS)
        raise config_lib.ConfigError(
            f"--resume: {flags} cannot change a resumed run (it keeps its config.json); "
            f"only {allowed} can be given with --resume"
        )
    text, path = _resumed_config_text(args), _resumed_config_path(args)
    if not given or text is None:
        return  # nothing to change; the run loader reports a bad run folder itself
    config = config_lib.from_args(cls, args, base=config_lib.from_json(cls, text, path))
    new_text = config_lib.to_json(config)
    if new_text != text:
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(new_text)
        os.replace(tmp, path)


def cpu_threads_for(method: str, args) -> int:
    """`--xla-cpu-threads` resolved: an integer, or auto (see `rlax_zoo.xla_cpu`)."""
    from rlax_zoo import xla_cpu
    from rlax_zoo.envs.envpool_env import is_atari

    value = args.xla_cpu_threads
    if value != "auto":
        try:
            return int(value)
        except ValueError:
            raise config_lib.ConfigError(
                f"--xla-cpu-threads must be auto or an integer from 1 to "
                f"{xla_cpu.available_cpus()}, got {value!r}"
            ) from None
    env_id = _env_id_of(args)
    wide = method in WIDE_METHODS or (env_id is not None and is_atari(env_id))
    return xla_cpu.available_cpus() if wide or method in THREADED_METHODS else 1


def _initialize_distributed(cls, args) -> None:
    """`jax.distributed.initialize` for a multi-process run (a config with `num_processes` >
    1, from the flags or the resumed run's config.json); nothing otherwise."""
    if "num_processes" not in {f.name for f in dataclasses.fields(cls)}:
        return
    if args.resume is None:
        config = config_lib.from_args(cls, args)
    elif (text := _resumed_config_text(args)) is not None:
        config = config_lib.from_json(cls, text, _resumed_config_path(args))
    else:
        return  # the run loader reports a bad run folder itself
    if config.num_processes > 1:
        from rlax_zoo.agents.impala import initialize_distributed

        initialize_distributed(config)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        try:
            return run_benchmark(args.name, args.script_args, args.benchmarks_dir)
        except config_lib.ConfigError as e:
            print(f"rlax-zoo: error: {e}", file=sys.stderr)
            return 2
    if args.command == "sample":
        from diffusion.train import sample_from_run

        # a flag of the other sampler would be silently ignored: refuse it by name
        ddim_flags = {
            "--steps": args.steps,
            "--eta": args.eta,
            "--spacing": args.spacing,
            "--rederive-eps": args.rederive_eps,
        }
        given = [flag for flag, value in ddim_flags.items() if value is not None]
        if args.sampler == "ddpm" and given:
            print(f"rlax-zoo: error: {', '.join(given)} apply to --sampler ddim", file=sys.stderr)
            return 2
        if args.sampler == "ddim" and args.sigma is not None:
            print("rlax-zoo: error: --sigma applies to --sampler ddpm", file=sys.stderr)
            return 2
        try:
            path, _ = sample_from_run(
                args.run,
                args.n,
                args.sampler,
                50 if args.steps is None else args.steps,
                args.seed,
                args.out,
                eta=args.eta,
                spacing=args.spacing,
                rederive_eps=args.rederive_eps,
                sigma=args.sigma,
                label=args.label,
                guidance=args.guidance,
            )
        except (config_lib.ConfigError, CheckpointError, ImageDataError) as e:
            print(f"rlax-zoo: error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {args.n} samples to {os.path.abspath(path)}")
        return 0
    if args.command == "translate":
        from sequence.translate import translate_sentences

        try:
            outputs = translate_sentences(args.run, args.text, args.beam_size)
        except (config_lib.ConfigError, CheckpointError) as e:
            print(f"rlax-zoo: error: {e}", file=sys.stderr)
            return 2
        print("\n".join(outputs))
        return 0
    if args.command == "disguise":
        from diffusion.latent import run_disguise

        try:
            report = run_disguise(
                args.autoencoder,
                args.copyrighted,
                args.base,
                args.out,
                alpha=args.alpha,
                gamma_1=args.gamma_1,
                gamma_2=args.gamma_2,
                learning_rate=args.learning_rate,
                max_steps=args.max_steps,
                linf_radius=args.linf_radius if args.linf_radius > 0 else None,
                optimizer=args.optimizer,
            )
        except (ValueError, CheckpointError) as e:  # ImageDataError and ConfigError included
            print(f"rlax-zoo: error: {e}", file=sys.stderr)
            return 2
        for k, base in enumerate(report["bases"]):
            print(
                f"{base}: PSNR {report['psnr'][k]:.1f} dB, D2 {report['d2'][k]:.4f} (base "
                f"{report['base_d2'][k]:.4f}), thresholds reached: {report['reached'][k]}"
            )
        print(f"disguises in {os.path.abspath(args.out)}")
        return 0
    if args.command == "train":
        method = METHODS[args.method]
        cls = method.config_cls()
        from rlax_zoo import runner, xla_cpu

        try:
            if args.resume is not None:
                apply_resume_flags(cls, args)
            _initialize_distributed(cls, args)  # before anything starts JAX's backend
            threads = cpu_threads_for(args.method, args)
            try:
                xla_cpu.configure_cpu_threads(threads)
            except ValueError as e:
                raise config_lib.ConfigError(f"--xla-cpu-threads: {e}") from None
            except RuntimeError:
                pass  # JAX already ran in this process (main() called from Python): keep it
            config = None
            if args.resume is None:
                config = config_lib.from_args(cls, args)
            if method.driver is not None:
                run = _resolve(method.driver)(
                    config,
                    run_dir=args.run_dir,
                    resume=args.resume,
                    progress=not args.no_progress,
                )
                print(run.summary())
                print(f"run folder: {os.path.abspath(run.run_dir)}")
                return 0
            result = runner.run(
                args.method,
                _resolve(method.build),
                config if config is not None else cls(),
                run_dir=args.run_dir,
                resume=args.resume,
                progress=not args.no_progress,
            )
        except (
            config_lib.ConfigError,
            EnvError,
            CheckpointError,
            FileExistsError,
            FloatingPointError,
            DataError,
            ImageDataError,
        ) as e:
            print(f"rlax-zoo: error: {e}", file=sys.stderr)
            return 2
        status = "done"
        if result.interrupted:
            status = f"interrupted (resume with --resume {result.run_dir})"
        elif result.out_of_time:
            status = f"stopped by --time-budget-s after {result.train_seconds:.0f} s of training"
        finals = [
            f"{sum(r[-20:]) / len(r[-20:]):.1f}" if r else "n/a" for r in result.episode_returns
        ]
        print(f"{status}: mean return of the last 20 episodes per seed: {', '.join(finals)}")
        print(f"run folder: {os.path.abspath(result.run_dir)}")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
