"""A logger writer in its own process, for the kill -9 test.

    python feeder.py DB_URL SPOOL_DIR

Feeds one reading per millisecond-step (sensor "k", value = index) and prints
`stored N` each time readings up to index N are stored or spooled.
"""

import sys
import time

from services.logger.spool import Spool
from services.logger.store import open_store
from services.logger.writer import Writer

T0_US = 1_790_000_000 * 10**6


def main(url: str, spool_dir: str) -> None:
    def stored(rows):
        print(f"stored {max(r[3] for r in rows):.0f}", flush=True)

    writer = Writer(open_store(url), Spool(spool_dir, 50 * 2**20), batch_s=0.05, retry_s=0.2,
                    on_stored=stored)
    writer.start()
    i = 0
    while True:
        writer.add([("k", "V", T0_US + i * 1000 + j, float(i + j)) for j in range(10)])
        i += 10
        time.sleep(0.002)


if __name__ == "__main__":
    main(*sys.argv[1:])
