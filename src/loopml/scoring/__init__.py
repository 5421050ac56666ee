"""Batch scoring: a registered model version (or a deployment's primary version) over a lake
table's version, into another table, in this process (``batch``) or on a Ray cluster
(``ray_batch``, its actors in ``_ray_actor``). Above ``registry`` (it fetches packages),
beside the prediction log, which it does not write: a batch's rows land in its output
table."""
