"""The charms the functional bundles deploy: the ``functional/*`` rows of tests/support/build_charms.py.

Outputs, which the bundles name by relative path:
  build/functional/current/kcp-consumer   backend charm-{model-uuid}-{app}
  build/functional/legacy/kcp-consumer    backend charm-{app}

Run: python -m tests.functional.build   (make functional-charms; needs network: layer:basic)
"""

from tests.support.build_charms import FUNCTIONAL_BUILDS, REPO, build_functional, output_of

OUTPUTS = {name.split("/", 1)[1]: output_of(REPO / "build", name) for name in FUNCTIONAL_BUILDS}


def build() -> None:
    for name, path in build_functional().items():
        print("{}: {}".format(name, path))


if __name__ == "__main__":
    build()
