#!/usr/bin/env python3
"""Unique bytes written in a time window, from a fio latency log written with
--log_offset=1 (lines "msec, value, direction, size, offset[, prio]").

    unique_bytes.py LOG FROM_MS TO_MS    # prints the size of the union of the ranges
"""
import sys


def main():
    log, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ranges = []
    with open(log) as f:
        for line in f:
            cols = [c.strip() for c in line.split(",")]
            if len(cols) < 5 or cols[2] != "1":  # direction 1 = write
                continue
            ms, size, off = int(cols[0]), int(cols[3]), int(cols[4])
            if lo <= ms <= hi:
                ranges.append((off, off + size))
    ranges.sort()
    total, end = 0, -1
    for a, b in ranges:
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    print(total)


if __name__ == "__main__":
    main()
