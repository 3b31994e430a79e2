// Package layers owns roost's content-addressed image store: blobs, read-only
// layers, image records and tags.
//
// On disk, under the storage root:
//
//	blobs/sha256/<hex>          manifests, configs and the gzip blobs of layers made here
//	                            (a pulled layer's compressed blob is not kept: see remote.go)
//	layers/<hex>/layer.tar      one read-only layer as its uncompressed tar; <hex> is its diff ID
//	layers/<hex>/index          the layer's index: every tar entry's header and data offset
//	                            (index.go; one in the gob format of before is replaced,
//	                            by rename, in the current one when read)
//	merged/<hex>                the merged view of a chain of layers (package fuse, view.go):
//	                            a cache a container's start loads instead of building the
//	                            tree of its image's layers; <hex> is the sha256 of their diff
//	                            IDs; prune removes those of no image
//	images/<hex>.json           an image record; <hex> is the image ID (the config digest)
//	images/repositories.json    tags: normalized reference -> image ID
//	tmp/                        temp files of writes in progress; prune removes leftovers
//	tmp/partial-<hex>           a large blob's download kept for an interrupted pull to
//	                            continue; it outlives failed pulls, prune removes it
//	gc.lock, meta.lock          flock files
//
// What must hold:
//   - A blob or layer is named by its sha256 and never changes once renamed into
//     place. Every write goes temp file -> hash while copying -> fsync -> rename, so a
//     crash leaves at worst a file under tmp/ or an unreferenced layer.
//   - A layer is kept as the tar it was given (so its diff ID is the hash of the file)
//     plus an index, so a union filesystem can serve any file with one pread at the
//     recorded offset and metadata comes straight from the tar headers: no extraction,
//     no chown, no subuid range needed, and a layer is one file on NFS. On local
//     disk filesystems the tar is written with O_DIRECT (direct.go).
//   - Blobs are verified on every read; layer tars are verified whenever they are
//     streamed whole (save, push) and the error names the digest.
//   - Writers that add layers or blobs hold gc.lock shared for their whole run; prune
//     holds it exclusive, so it never deletes what a writer has not yet referenced.
//     meta.lock guards the short read-modify-write of image records and tags.
package layers
