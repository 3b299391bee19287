//! memlink-capability: shared memory segments, the shared address window, the three
//! shared-reference schemes (coinciding addresses, translated references, dynamic
//! capabilities) and the shared process descriptor.
