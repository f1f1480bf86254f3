"""A small simulator of Juju for running built charms' hooks as real processes.

``controller.Controller`` models several models with applications, units and
relations, keeps everything in one JSON state file, and runs hooks as Juju
would queue them.  ``hooktools`` implements the hook tools (relation-get,
leader-set, status-set, ...) that a hook finds on its PATH.
"""
