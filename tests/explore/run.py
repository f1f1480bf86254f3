"""`make explore`: random schedules of the whole lifecycle (``lifecycle.Lifecycle``) for EXPLORE_MINUTES.

Each round is ``EXPLORE_EXAMPLES`` schedules (default 10) drawn by hypothesis from one seed
(``EXPLORE_SEED``, then one more each round; random when not given), so a round is replayed exactly with
``EXPLORE_SEED=<seed> EXPLORE_ROUNDS=1 make explore``.  A schedule that breaks an invariant is shrunk by
hypothesis, which prints the smallest schedule it found as the calls that replay it; the runner prints
the seed beside it and keeps every failure in ``build/explore/violations.txt``.  A progress line follows
each schedule; the last line gives the schedules and steps run and the violations found.  Exits 1 when it found any.
SIGTERM (or Ctrl-C) ends it within a hook, shrinking or not, and stops every server it started.
"""

import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import charmhelpers.osplatform

charmhelpers.osplatform.get_platform = lambda: "ubuntu"  # charms run on Ubuntu; this host may not

from hypothesis import seed  # noqa: E402

from tests.explore import lifecycle  # noqa: E402

STEPS = int(os.environ.get("EXPLORE_STEPS", "20"))
EXAMPLES = int(os.environ.get("EXPLORE_EXAMPLES", "10"))


def run_schedules(seed_value: int, steps: int = STEPS, examples: int = EXAMPLES) -> None:
    """The schedules hypothesis draws from ``seed_value``; raises what breaks an invariant (shrunk)."""
    seed(seed_value)(lifecycle.schedules(steps, examples))()


class _TimeUp(KeyboardInterrupt):
    """EXPLORE_MINUTES have passed: the run ends after the schedule that just ended, even within a round
    (hypothesis lets a KeyboardInterrupt through at once, without shrinking anything)."""


def _interrupt(signum, frame):
    """SIGTERM ends the run as Ctrl-C does (OpenBao and etcd stopped by process id), and stays said: every hook
    the explorer would run next raises again, should hypothesis have caught the first (its shrinking does)."""
    lifecycle.STOP.append(signum)
    raise lifecycle.Stopped()


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    minutes = float(os.environ.get("EXPLORE_MINUTES", "30"))
    rounds = int(os.environ.get("EXPLORE_ROUNDS", "0")) or None
    first = int(os.environ.get("EXPLORE_SEED", "0")) or random.randrange(1, 2**31)
    out = Path("build/explore")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = started + minutes * 60
    violations = 0
    interrupted = 0
    number = 0
    shrinking = set()  # rounds that found a violation (never cut short)
    print(
        "exploring for {} min from seed {} ({} schedules a seed, up to {} steps each) ...".format(
            minutes, first, EXAMPLES, STEPS
        )
    )

    def progress(outcome, steps):
        totals = lifecycle.TOTALS
        print(
            "[{:5.1f} min] seed {}, schedule {}: {} ({} steps); {} schedules, {} steps, {} hooks so far".format(
                (time.monotonic() - started) / 60,
                first + number - 1,
                totals["schedules"],
                outcome,
                len(steps),
                totals["schedules"],
                totals["steps"],
                totals["hooks"],
            ),
            flush=True,
        )
        if os.environ.get("EXPLORE_VERBOSE"):
            print("    " + " | ".join(steps), flush=True)
        if outcome != "ok":
            shrinking.add(number)  # this round found a violation: hypothesis shrinks it to the end
        if lifecycle.STOP:
            raise lifecycle.Stopped()
        if time.monotonic() >= deadline and number not in shrinking:
            raise _TimeUp()

    lifecycle.ON_SCHEDULE_END.append(progress)
    try:
        while time.monotonic() < deadline and (rounds is None or number < rounds):
            seed_value = first + number
            number += 1
            try:
                run_schedules(seed_value)
                outcome = "ok"
            except _TimeUp:
                print("seed {}: time is up ({} min), ending after its last schedule".format(seed_value, minutes))
                break
            except Exception as error:  # an invariant broken: hypothesis printed the shrunk schedule above
                if lifecycle.STOP and number not in shrinking:  # what hypothesis made of the signal alone
                    print("seed {}: stopped by signal {}".format(seed_value, lifecycle.STOP[0]))
                    interrupted = 128 + lifecycle.STOP[0]
                    break
                violations += 1
                outcome = "VIOLATION: {}".format(str(error).splitlines()[0][:200] if str(error) else type(error))
                with open(out / "violations.txt", "a") as handle:
                    handle.write("seed {}\n{}\n\n".format(seed_value, traceback.format_exc()))
            print("seed {} done: {}; {} violations so far".format(seed_value, outcome, violations), flush=True)
            if lifecycle.STOP:
                break
    except KeyboardInterrupt:
        interrupted = 128 + (lifecycle.STOP[0] if lifecycle.STOP else signal.SIGINT)
        if number in shrinking:  # a violation found in this round, its shrinking cut short
            violations += 1
        print(
            "stopped by {}{}; OpenBao and etcd are stopped next".format(
                "signal {}".format(lifecycle.STOP[0]) if lifecycle.STOP else "Ctrl-C",
                " while shrinking a violation (the schedule printed last is not the smallest)"
                if number in shrinking
                else "",
            ),
            flush=True,
        )
    finally:
        lifecycle.close()
    totals = lifecycle.TOTALS
    print(
        "explored {} seeds in {:.1f} min: {} schedules run, {} steps, {} hooks; {} violations{}".format(
            number,
            (time.monotonic() - started) / 60,
            totals["schedules"],
            totals["steps"],
            totals["hooks"],
            violations,
            " (see build/explore/violations.txt)" if violations else "",
        )
    )
    return 1 if violations else interrupted


if __name__ == "__main__":
    sys.exit(main())
