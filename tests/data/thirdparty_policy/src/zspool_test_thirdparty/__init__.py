"""A third-party policy as a user would write one: frees half of what is freeable."""

SHRINK_STOP = -1


class HalvesPolicy:
    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction = fraction

    def count_objects(self, pool, sc):
        return int(pool.can_compact() * self.fraction)

    def scan_objects(self, pool, sc):
        return pool.compact(max_pages=sc.nr_to_scan).pages_freed or SHRINK_STOP


class BrokenPolicy:
    def count_objects(self, pool, sc):
        raise RuntimeError("third-party bug")

    def scan_objects(self, pool, sc):
        return "nonsense"
