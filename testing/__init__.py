"""Test infrastructure shared by the tests and the benchmarks: a loopback OSS server for the real oss2 client."""
