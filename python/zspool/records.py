"""Seeded, realistic JSON records: the small values Python caches hold.

User profiles as a web application caches them (what ``faker``'s ``profile()`` gives, with
its field distributions): a name drawn from common first and last names, a username and an
e-mail derived from it at a free-mail or company domain, a postal address, a company and a
job, sign-up and last-login timestamps, two flags and a score. Serialized with
``json.dumps`` (no spaces after separators, as an API would), a record is about 300 bytes.

Per-value compression barely works on one such record; a zstd dictionary trained on a few
thousand of them works very well, which is what ``Cache(dictionary=True)`` is for. Every
record depends only on ``(seed, i)``, so benchmarks and tests see the same data every run.
"""

from __future__ import annotations

import datetime
import json
import random
from collections.abc import Iterator
from typing import Any

__all__ = ["user_record", "user_record_bytes", "user_records"]

_FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Christopher",
    "Karen",
    "Charles",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Betty",
    "Anthony",
    "Sandra",
    "Mark",
    "Margaret",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Andrew",
    "Emily",
    "Paul",
    "Donna",
    "Joshua",
    "Michelle",
    "Kenneth",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Timothy",
    "Stephanie",
    "Ronald",
    "Rebecca",
    "Jason",
    "Laura",
    "Edward",
    "Helen",
]
_LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
]
_MAIL = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "protonmail.com")
_STREETS = [
    "Main",
    "Oak",
    "Pine",
    "Maple",
    "Cedar",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "View",
    "Sunset",
    "Ridge",
    "River",
    "Church",
    "Spring",
    "Forest",
]
_SUFFIX = ("Street", "Avenue", "Road", "Lane", "Drive", "Court", "Boulevard", "Way", "Place")
_CITIES = (
    ("Springfield", "IL"), ("Riverside", "CA"), ("Franklin", "TN"), ("Greenville", "SC"), ("Bristol", "CT"),
    ("Clinton", "IA"), ("Fairview", "OR"), ("Salem", "MA"), ("Madison", "WI"), ("Georgetown", "TX"),
    ("Arlington", "VA"), ("Ashland", "OH"), ("Dover", "DE"), ("Oxford", "MS"), ("Jackson", "MI"),
)  # fmt: skip
_COMPANY = ("Inc", "LLC", "Group", "PLC", "and Sons", "Ltd", "Partners")
_JOBS = (
    "Software engineer", "Accountant", "Registered nurse", "Teacher", "Graphic designer", "Sales manager",
    "Data analyst", "Civil engineer", "Pharmacist", "Marketing coordinator", "Electrician", "Chef",
    "Financial adviser", "Product manager", "Dentist", "Architect", "Paralegal", "Web developer",
)  # fmt: skip
_EPOCH = 1_640_995_200  # 2022-01-01T00:00:00Z


def _iso(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def user_record(i: int, seed: int = 0) -> dict[str, Any]:
    """Record ``i`` of the sequence ``seed``, as a dict."""
    rng = random.Random(seed * 1_000_003 + i)
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    username = (
        f"{first.lower()}{rng.choice(('', '.', '_'))}{last.lower()}{rng.randrange(100) if rng.random() < 0.6 else ''}"
    )
    company = f"{rng.choice(_LAST)} {rng.choice(_COMPANY)}"
    domain = rng.choice(_MAIL) if rng.random() < 0.7 else company.split()[0].lower() + ".com"
    city, state = rng.choice(_CITIES)
    created = _EPOCH + rng.randrange(3 * 365 * 86_400)
    return {
        "id": i,
        "username": username,
        "name": f"{first} {last}",
        "mail": f"{username}@{domain}",
        "address": f"{rng.randrange(1, 9999)} {rng.choice(_STREETS)} {rng.choice(_SUFFIX)}\n"
        f"{city}, {state} {rng.randrange(10_000, 99_999)}",
        "company": company,
        "job": rng.choice(_JOBS),
        "created_at": _iso(created),
        "last_login": _iso(created + rng.randrange(90 * 86_400)),
        "active": rng.random() < 0.85,
        "verified": rng.random() < 0.7,
        "score": round(rng.uniform(0, 100), 2),
    }


def user_record_bytes(i: int, seed: int = 0) -> bytes:
    """Record ``i`` of the sequence ``seed``, serialized as compact JSON."""
    return json.dumps(user_record(i, seed), separators=(",", ":")).encode()


def user_records(n: int, seed: int = 0) -> Iterator[bytes]:
    """The first ``n`` records of the sequence ``seed``, serialized."""
    return (user_record_bytes(i, seed) for i in range(n))
