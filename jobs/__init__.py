"""RQ job functions: small, take ids, reload state, return early when already done.

Each runs inside the Flask app context (see ``app.queue.worker.AppWorker``).
"""
