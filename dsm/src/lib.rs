//! memlink-dsm: a page-coherent distributed shared memory across node processes.
