"""The Transformer (Vaswani et al. 2017) on Multi30k En-De, sized for this CPU: training
time, the validation cross-entropy curve, and greedy-decoding BLEU (Papineni et al. 2002,
corpus level, lower-cased word tokens, one reference) on the validation and test_2016_flickr
splits, against the floor of copying the source sentence.

    python benchmarks/transformer_multi30k.py [--set field=value ...] [--run-dir DIR]
        [--out JSON] [--xla-cpu-threads all|N]

It trains `rlax-zoo train transformer`'s config (plus --set overrides) in a run folder and
reads its results. A time-boxed run: `--set time_budget_s=1800 iterations=20000`.
With --attention it instead times the attention primitive against JAX's own
`jax.nn.dot_product_attention` (the XLA implementation) in the same process: forward and
backward at the shapes of a training batch here and at a long sequence, median of 7
interleaved repeats. With --decode RUN_DIR (a finished run) it times beam search over the
test split with and without its early stop (`beam_search(early_stop=...)`) and with settled
sentences retired from the batch (`make_retiring_beam_search`), and that with the batches
cut from the sentences sorted by source length (what evaluation uses), interleaved, median
of --repeats, and checks that all four return the same translations (--set may change the
run's evaluation fields, e.g. length_penalty=0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import (  # noqa: E402
    add_xla_cpu_threads_flag,
    apply_xla_cpu_threads,
    interleaved_seconds,
    machine_line,
    overrides_or_exit,
)
from rlax_zoo.config import ConfigError  # noqa: E402
from sequence.data import TextDataError  # noqa: E402
from sequence.translate import TransformerConfig, check_config, run_transformer  # noqa: E402


def copy_source_bleu(config: TransformerConfig) -> dict:
    """The floor: BLEU of the source sentence's own tokens as the 'translation'."""
    from sequence.data import corpus_bleu, load_parallel, tokenize

    out = {}
    for split in ("val", "test"):
        src, tgt = load_parallel(split, config.data_dir, config.src, config.tgt)
        out[split] = corpus_bleu([tokenize(s) for s in src], [tokenize(t) for t in tgt])
    return out


def time_attention(repeats: int = 7) -> list[dict]:
    """Forward + backward seconds of `scaled_dot_product_attention` against
    `jax.nn.dot_product_attention`, interleaved, median of `repeats` (after a compile call)."""
    import jax
    import jax.numpy as jnp

    from sequence.attention import scaled_dot_product_attention

    rows = []
    for B, T, H, K in ((128, 24, 4, 64), (8, 512, 8, 64)):
        keys = jax.random.split(jax.random.key(0), 3)
        q, k, v = (jax.random.normal(kk, (B, T, H, K)) for kk in keys)
        mask = jnp.tril(jnp.ones((T, T), bool))[None, None]
        fns = {
            "ours": lambda q, k, v, mask=mask: scaled_dot_product_attention(q, k, v, mask),
            "jax.nn": lambda q, k, v, mask=mask: jax.nn.dot_product_attention(q, k, v, mask=mask),
        }
        grads = {
            name: jax.jit(jax.grad(lambda q, k, v, f=f: f(q, k, v).sum(), argnums=(0, 1, 2)))
            for name, f in fns.items()
        }
        ref = jax.nn.dot_product_attention(q, k, v, mask=mask)
        err = float(jnp.max(jnp.abs(fns["ours"](q, k, v) - ref)))
        times = {name: [] for name in grads}
        for g in grads.values():
            jax.block_until_ready(g(q, k, v))
        for _ in range(repeats):
            for name, g in grads.items():
                t0 = time.perf_counter()
                jax.block_until_ready(g(q, k, v))
                times[name].append(time.perf_counter() - t0)
        med = {name: float(np.median(t)) for name, t in times.items()}
        rows.append(
            dict(
                shape=f"B={B} T={T} H={H} K={K}",
                ours_s=med["ours"],
                jax_nn_s=med["jax.nn"],
                ratio_jax_nn_over_ours=med["jax.nn"] / med["ours"],
                max_abs_diff=err,
            )
        )
        print(
            f"attention fwd+bwd {rows[-1]['shape']}: ours {med['ours'] * 1e3:.1f} ms, "
            f"jax.nn.dot_product_attention {med['jax.nn'] * 1e3:.1f} ms "
            f"(ratio {rows[-1]['ratio_jax_nn_over_ours']:.2f}; outputs agree to {err:.1e})",
            flush=True,
        )
    return rows


def time_decoding(run_dir: str, repeats: int, changes: dict) -> dict:
    """Seconds to beam-search the test split with and without the early stop, and retiring
    settled sentences (see doc); `changes`: evaluation fields of the run's config (beam_size,
    length_penalty, ...)."""
    import jax
    import jax.numpy as jnp

    from sequence.data import BOS, EOS
    from sequence.transformer import beam_search, make_retiring_beam_search
    from sequence.translate import decode_in_batches, restore_finished

    config, data, trainer, state = restore_finished(
        run_dir, "transformer_multi30k --decode", **changes
    )
    params = {"params": state.params}
    b = config.eval_batch_size
    searches = {
        flag: jax.jit(
            lambda p, src, flag=flag: beam_search(
                trainer.model, p, src, config.max_len, BOS, EOS, config.beam_size,
                config.length_penalty, early_stop=flag,
            )[0]
        )
        for flag in (True, False)
    }  # fmt: skip
    fns = {"early stop": (searches[True], False), "full search": (searches[False], False)}
    retiring = make_retiring_beam_search(
        trainer.model, config.max_len, BOS, EOS, config.beam_size, config.length_penalty
    )
    fns["retiring"] = (lambda p, src: retiring(p, src)[0], False)
    fns["retiring, by length"] = (fns["retiring"][0], True)
    src = data.test_src

    def decode(name):
        fn, by_length = fns[name]
        return decode_in_batches(lambda x: fn(params, jnp.asarray(x)), src, b, by_length)

    outputs = {name: decode(name) for name in fns}  # compiles
    same = {
        name: bool(np.array_equal(out, outputs["full search"])) for name, out in outputs.items()
    }
    times = interleaved_seconds({name: lambda r, name=name: decode(name) for name in fns}, repeats)
    med = {name: float(np.median(t)) for name, t in times.items()}
    out = dict(
        run_dir=run_dir,
        sentences=len(src),
        batch_size=b,
        beam_size=config.beam_size,
        length_penalty=config.length_penalty,
        early_stop_seconds=med["early stop"],
        full_seconds=med["full search"],
        retiring_seconds=med["retiring"],
        speedup=med["full search"] / med["early stop"],
        retiring_speedup=med["full search"] / med["retiring"],
        retiring_by_length_seconds=med["retiring, by length"],
        retiring_by_length_speedup=med["full search"] / med["retiring, by length"],
        same_translations=same["early stop"],
        same_translations_retiring=same["retiring"],
        same_translations_retiring_by_length=same["retiring, by length"],
    )
    print(
        f"beam {config.beam_size}, alpha {config.length_penalty}, {len(src)} test sentences in "
        f"batches of {b}: full search {med['full search']:.1f} s, early stop "
        f"{med['early stop']:.1f} s ({out['speedup']:.2f}x), retiring settled sentences "
        f"{med['retiring']:.1f} s ({out['retiring_speedup']:.2f}x), and so with batches cut "
        f"from the sentences sorted by length {med['retiring, by length']:.1f} s "
        f"({out['retiring_by_length_speedup']:.2f}x); the same translations as the full search: "
        f"{same['early stop']}, {same['retiring']}, {same['retiring, by length']}",
        flush=True,
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--out", default=None, help="Write the results as JSON here.")
    p.add_argument("--attention", action="store_true", help="Time attention only (see doc).")
    p.add_argument("--decode", default=None, metavar="RUN_DIR", help="Time beam search only.")
    p.add_argument("--repeats", type=int, default=3, help="Timed repeats for --decode.")
    add_xla_cpu_threads_flag(p, default="all")  # as `rlax-zoo train transformer` picks
    args = p.parse_args()
    overrides = overrides_or_exit(p, TransformerConfig, args.set)
    apply_xla_cpu_threads(args)
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line(), flush=True)
    out = dict(command="python " + " ".join(sys.argv), machine=machine_line())
    if args.attention:
        out["attention"] = time_attention()
    elif args.decode:
        out["decode"] = time_decoding(args.decode, args.repeats, overrides)
    else:
        config = TransformerConfig(**overrides)
        out["config"] = overrides
        try:
            check_config(config)
            out["copy_source_bleu"] = copy_source_bleu(config)
            print(f"floor, the source copied: BLEU {out['copy_source_bleu']}", flush=True)
            run = run_transformer(config, run_dir=args.run_dir)
        except (ConfigError, TextDataError) as e:  # bad data or a config that cannot train
            p.error(str(e))
        out.update(run_dir=run.run_dir, results=run.results, curve=run.metrics)
        print(run.summary())
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
