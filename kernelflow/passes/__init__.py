"""Graph -> Graph passes: simplification, CSE, DCE, autodiff, and (for the compilers) fusion."""
