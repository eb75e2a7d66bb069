"""The WLCG Tape REST API's domain: stage requests, their durable store and their execution.

``bodies`` checks what clients send, ``store`` keeps requests (SQLite or
MariaDB/MySQL, through the peewee ``models``), ``executor`` runs their files on
the backend from every worker process, ``service`` is what the HTTP layer
(``pyai.web.tape_api``) calls.  Nothing here knows HTTP beyond the statuses its
refusals carry.
"""
