# charms is shared by charms.reactive (installed) and the charm's own lib/.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
