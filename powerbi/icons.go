package powerbi

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
)

// Icon colours: a blue tile with a white bridge.
var (
	tileColor   = color.NRGBA{R: 0x1f, G: 0x6f, B: 0xb2, A: 0xff}
	bridgeColor = color.NRGBA{R: 0xff, G: 0xff, B: 0xff, A: 0xff}
)

// icon draws the connector icon at size×size pixels and encodes it as PNG.
// Shapes are defined in unit coordinates and sampled 4×4 per pixel, so every
// size is drawn rather than scaled.
func icon(size int) ([]byte, error) {
	const samples = 4
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			var tile, bridge int
			for sy := 0; sy < samples; sy++ {
				for sx := 0; sx < samples; sx++ {
					u := (float64(x) + (float64(sx)+0.5)/samples) / float64(size)
					v := (float64(y) + (float64(sy)+0.5)/samples) / float64(size)
					if inTile(u, v) {
						tile++
						if inBridge(u, v) {
							bridge++
						}
					}
				}
			}
			img.SetNRGBA(x, y, blend(tile, bridge, samples*samples))
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// blend mixes the tile and bridge colours by their sample coverage.
func blend(tile, bridge, total int) color.NRGBA {
	if tile == 0 {
		return color.NRGBA{}
	}
	w := float64(bridge) / float64(tile)
	mix := func(a, b uint8) uint8 { return uint8(math.Round(float64(a)*(1-w) + float64(b)*w)) }
	return color.NRGBA{
		R: mix(tileColor.R, bridgeColor.R),
		G: mix(tileColor.G, bridgeColor.G),
		B: mix(tileColor.B, bridgeColor.B),
		A: uint8(math.Round(255 * float64(tile) / float64(total))),
	}
}

// inTile reports whether (u, v) lies in the rounded square tile.
func inTile(u, v float64) bool {
	const r = 0.18
	dx := math.Max(math.Max(r-u, u-(1-r)), 0)
	dy := math.Max(math.Max(r-v, v-(1-r)), 0)
	return dx*dx+dy*dy <= r*r
}

// inBridge reports whether (u, v) lies on the bridge: a deck, an arch and
// two towers.
func inBridge(u, v float64) bool {
	deck := v >= 0.60 && v <= 0.68 && u >= 0.14 && u <= 0.86
	towers := (math.Abs(u-0.30) <= 0.045 || math.Abs(u-0.70) <= 0.045) && v >= 0.28 && v <= 0.80
	// The arch: a band of an ellipse centred on the deck.
	ex, ey := (u-0.5)/0.36, (v-0.66)/0.38
	d := math.Sqrt(ex*ex + ey*ey)
	arch := v <= 0.62 && d >= 0.80 && d <= 1.0
	return deck || towers || arch
}
