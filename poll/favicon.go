package poll

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/png"
)

// favicon returns a 16×16 icon (a blue dot) as an ICO file holding one
// PNG, which every current browser reads. Browsers ask for /favicon.ico
// on every demo load; without it each load logs a 404.
func favicon() []byte {
	const n = 16
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	blue := color.NRGBA{R: 0x25, G: 0x63, B: 0xeb, A: 0xff}
	for y := range n {
		for x := range n {
			if dx, dy := float64(x)-7.5, float64(y)-7.5; dx*dx+dy*dy <= 7.5*7.5 {
				img.SetNRGBA(x, y, blue)
			}
		}
	}
	var pngData bytes.Buffer
	_ = png.Encode(&pngData, img)
	var ico bytes.Buffer
	// ICONDIR: reserved, type 1 (icon), one image; then its ICONDIRENTRY:
	// width, height, palette size, reserved, planes, bits per pixel, size
	// of the image data and where it starts (after these 6+16 bytes).
	_ = binary.Write(&ico, binary.LittleEndian, struct {
		Reserved, Type, Count       uint16
		Width, Height, Colors, Res8 uint8
		Planes, BitCount            uint16
		Size, Offset                uint32
	}{0, 1, 1, n, n, 0, 0, 1, 32, uint32(pngData.Len()), 22})
	ico.Write(pngData.Bytes())
	return ico.Bytes()
}
