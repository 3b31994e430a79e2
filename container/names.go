package container

import (
	"fmt"
	mrand "math/rand/v2"
)

var (
	adjectives = []string{"agile", "amber", "bold", "brave", "bright", "calm", "clever", "cosy", "crisp", "curious",
		"daring", "eager", "early", "fancy", "fond", "frosty", "gentle", "glad", "golden", "happy", "hardy", "hidden",
		"humble", "jolly", "keen", "kind", "lively", "lucid", "lucky", "merry", "mighty", "modest", "nimble", "noble",
		"patient", "peaceful", "plucky", "polite", "proud", "quick", "quiet", "rapid", "ready", "rustic", "serene",
		"sharp", "shiny", "silent", "smart", "snowy", "spry", "steady", "sturdy", "sunny", "swift", "tender", "tidy",
		"trusty", "vivid", "warm", "wise", "witty", "zealous"}
	// Scientists, engineers and naturalists.
	surnames = []string{"agnesi", "archimedes", "babbage", "banach", "bardeen", "bohr", "boole", "borg", "cannon",
		"carson", "cerf", "chandrasekhar", "curie", "darwin", "dijkstra", "easley", "einstein", "euclid", "euler",
		"faraday", "fermat", "fermi", "feynman", "franklin", "galileo", "gauss", "goodall", "hamilton", "hawking",
		"hopper", "hypatia", "jemison", "johnson", "kepler", "knuth", "lamarr", "leakey", "lovelace", "margulis",
		"maxwell", "mcclintock", "meitner", "mendel", "minsky", "newton", "noether", "pascal", "pasteur", "payne",
		"perlman", "planck", "ramanujan", "ride", "ritchie", "shannon", "somerville", "thompson", "turing", "volta",
		"wilson", "wozniak", "yalow"}
)

// RandomName returns a Docker-like name, adjective_surname; with suffix, a
// digit is added to make collisions rarer.
func RandomName(suffix bool) string {
	n := adjectives[mrand.IntN(len(adjectives))] + "_" + surnames[mrand.IntN(len(surnames))]
	if suffix {
		n += fmt.Sprint(mrand.IntN(10))
	}
	return n
}
