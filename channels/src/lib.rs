//! memlink-channels: the synchronous zero-copy channel, loan channels, the two-copy
//! buffered baseline and many-sender ports.
