"""The book's chapters, one module each (``cNN_topic``, found by ``registry``), and what they share: ``glue``
(numbers, tables and figures into the prose), ``style`` (the figures' look) and ``tables`` (labels, formats)."""
