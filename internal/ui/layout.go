package ui

import (
	"math"
	"slices"
	"sort"
)

// The DAG drawing: a layered (Sugiyama) layout, left to right. Layers by
// longest path from the roots; an edge that spans several layers gets a
// dummy point in each layer between, so edges do not cut through nodes and
// take part in the ordering; the order within each layer is improved by
// barycenter sweeps (down then up) to cut edge crossings; coordinates are
// the layer and the order. Written here rather than vendored: it is small,
// and a saga's graph (tens of nodes) needs nothing more.

// Layout is a drawn graph.
type Layout struct {
	Width, Height float64
	Nodes         []Placed // indexed like the graph's nodes
	Edges         []Edge
}

// Placed is a node's box: its top-left corner.
type Placed struct {
	X, Y         float64
	Layer, Order int
}

// Edge is a drawn edge from one node to another, through Points.
type Edge struct {
	From, To int
	Points   [][2]float64
}

// Box sizes and gaps, in SVG units.
const (
	nodeW, nodeH = 150.0, 46.0
	gapX, gapY   = 60.0, 22.0
	margin       = 12.0
)

// layered lays out n nodes whose parents are given by index; parents
// come before children (a topological order).
func layered(n int, parents [][]int) Layout {
	layer := make([]int, n)
	for i := range n {
		for _, p := range parents[i] {
			layer[i] = max(layer[i], layer[p]+1)
		}
	}
	// Vertices: the nodes, then a dummy for each layer an edge crosses.
	type vertex struct {
		node  int // -1 for a dummy
		layer int
		pos   float64
	}
	vs := make([]vertex, n)
	for i := range n {
		vs[i] = vertex{node: i, layer: layer[i]}
	}
	type link struct{ from, to int } // vertex indexes, adjacent layers
	var links []link
	chains := map[[2]int][]int{} // edge (parent, child) → its vertices, parent to child
	for c := range n {
		for _, p := range parents[c] {
			chain := []int{p}
			for l := layer[p] + 1; l < layer[c]; l++ {
				vs = append(vs, vertex{node: -1, layer: l})
				chain = append(chain, len(vs)-1)
			}
			chain = append(chain, c)
			for k := 1; k < len(chain); k++ {
				links = append(links, link{chain[k-1], chain[k]})
			}
			chains[[2]int{p, c}] = chain
		}
	}
	layers := 0
	for _, v := range vs {
		layers = max(layers, v.layer+1)
	}
	byLayer := make([][]int, layers)
	for i, v := range vs {
		byLayer[v.layer] = append(byLayer[v.layer], i)
	}
	up := make([][]int, len(vs))   // neighbours in the previous layer
	down := make([][]int, len(vs)) // in the next
	for _, l := range links {
		down[l.from] = append(down[l.from], l.to)
		up[l.to] = append(up[l.to], l.from)
	}
	place := func(l int) {
		for k, v := range byLayer[l] {
			vs[v].pos = float64(k)
		}
	}
	for l := range byLayer {
		place(l)
	}
	crossings := func() int {
		total := 0
		for l := 0; l+1 < layers; l++ {
			var es [][2]float64
			for _, v := range byLayer[l] {
				for _, w := range down[v] {
					es = append(es, [2]float64{vs[v].pos, vs[w].pos})
				}
			}
			for a := range es {
				for b := a + 1; b < len(es); b++ {
					if (es[a][0]-es[b][0])*(es[a][1]-es[b][1]) < 0 {
						total++
					}
				}
			}
		}
		return total
	}
	sweep := func(l int, nb [][]int) {
		bary := func(v int) float64 {
			if len(nb[v]) == 0 {
				return vs[v].pos
			}
			s := 0.0
			for _, w := range nb[v] {
				s += vs[w].pos
			}
			return s / float64(len(nb[v]))
		}
		sort.SliceStable(byLayer[l], func(a, b int) bool { return bary(byLayer[l][a]) < bary(byLayer[l][b]) })
		place(l)
	}
	best, bestOrder := crossings(), snapshot(byLayer)
	for range 12 {
		for l := 1; l < layers; l++ {
			sweep(l, up)
		}
		for l := layers - 2; l >= 0; l-- {
			sweep(l, down)
		}
		if c := crossings(); c < best {
			best, bestOrder = c, snapshot(byLayer)
		}
	}
	byLayer = bestOrder
	tallest := 0
	for _, vsInLayer := range byLayer {
		tallest = max(tallest, len(vsInLayer))
	}
	out := Layout{Nodes: make([]Placed, n)}
	out.Width = 2*margin + float64(layers)*nodeW + float64(max(layers-1, 0))*gapX
	out.Height = 2*margin + float64(tallest)*nodeH + float64(max(tallest-1, 0))*gapY
	center := func(v int) (float64, float64) {
		l := vs[v].layer
		k := slices.Index(byLayer[l], v)
		offset := (float64(tallest-len(byLayer[l])) * (nodeH + gapY)) / 2
		x := margin + float64(l)*(nodeW+gapX)
		y := margin + offset + float64(k)*(nodeH+gapY)
		return x, y
	}
	for i := range n {
		x, y := center(i)
		out.Nodes[i] = Placed{X: x, Y: y, Layer: layer[i], Order: slices.Index(byLayer[layer[i]], i)}
	}
	for c := range n {
		for _, p := range parents[c] {
			chain := chains[[2]int{p, c}]
			e := Edge{From: p, To: c}
			px, py := center(p)
			e.Points = append(e.Points, [2]float64{px + nodeW, py + nodeH/2})
			for _, d := range chain[1 : len(chain)-1] {
				x, y := center(d)
				e.Points = append(e.Points, [2]float64{x, y + nodeH/2}, [2]float64{x + nodeW, y + nodeH/2})
			}
			cx, cy := center(c)
			e.Points = append(e.Points, [2]float64{cx, cy + nodeH/2})
			out.Edges = append(out.Edges, e)
		}
	}
	return out
}

func snapshot(byLayer [][]int) [][]int {
	out := make([][]int, len(byLayer))
	for i, l := range byLayer {
		out[i] = slices.Clone(l)
	}
	return out
}

// round keeps SVG numbers short.
func round(f float64) float64 { return math.Round(f*10) / 10 }
