"""The fogmesh sample app: the edge workload from section 6 of the paper.

* :mod:`fogmesh_sample.sensor` publishes 50x50 matrices of simulated readings to
  ``fm/v1/data/{tenant}/{app}/in``;
* :mod:`fogmesh_sample.convolve` convolves each one with a 1x2 sliding window (5,000
  multiplications and 2,500 additions per 50x50 set) and publishes the result to
  ``fm/v1/data/{tenant}/{app}/out``.

Only ``paho-mqtt`` is needed, so both run in a minimal image.
"""

__version__ = "0.1.0"
