"""A logger writer in its own process, for the kill -9 tests.

    python feeder.py DB_URL SPOOL_DIR [--batch-s S] [--timeout-s S] [--live]

Feeds sensor "k", value = index: by default ten readings per 2 ms step at made-up
times; with --live one reading every 10 ms stamped with the wall clock, as a
polled device would. Prints `stored N` each time readings up to index N are
stored or spooled (durable), and `database STATE` when the writer's view of the
database changes.
"""

import argparse
import time

from drivers.base import utcnow
from services.logger.queries import to_us
from services.logger.spool import Spool
from services.logger.store import open_store
from services.logger.writer import Writer

T0_US = 1_790_000_000 * 10**6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("spool_dir")
    parser.add_argument("--batch-s", type=float, default=0.05)
    parser.add_argument("--timeout-s", type=float, default=5.0)
    parser.add_argument("--live", action="store_true")
    args = parser.parse_args()

    def stored(rows):
        print(f"stored {max(r[3] for r in rows):.0f}", flush=True)

    writer = Writer(open_store(args.url, args.timeout_s), Spool(args.spool_dir, 50 * 2**20),
                    batch_s=args.batch_s, retry_s=0.2, on_stored=stored)
    writer.start()
    i, state = 0, None
    while True:
        if args.live:
            writer.add([("k", "V", to_us(utcnow()), float(i))])
            i += 1
            time.sleep(0.01)
        else:
            writer.add([("k", "V", T0_US + i * 1000 + j, float(i + j)) for j in range(10)])
            i += 10
            time.sleep(0.002)
        if writer.database_ok != state:
            state = writer.database_ok
            print(f"database {state}", flush=True)


if __name__ == "__main__":
    main()
