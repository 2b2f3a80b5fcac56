"""Several `aistack serve` replicas behind HAProxy: the config template and `aistack up`.

``haproxy`` renders the configuration (docker-compose and local), ``replicas`` runs child
processes, ``local`` puts them together on one machine.
"""
