"""The Ansible engine: parse inventories, check playbooks, run a playbook, end its processes.

It uses ansible-core and ansible-runner and nothing else of the application (no Flask,
Celery or database), so it can be tested, and reasoned about, on its own:

- ``inventory``: ``parse_inventory`` (INI or YAML, by ansible-core) and ``render_inventory_yaml``.
- ``syntax``: ``check_playbook`` and ``check_project_playbook``.
- ``runs``: ``run_playbook``, one run through ansible-runner, its events and its outcome.
- ``processes``: the run's processes, found by the marker in their environment, and ended.

Importing the package imports no ansible code: ``runs`` loads ansible-runner when a run
starts, and the other modules run ansible's own commands in subprocesses.
"""
