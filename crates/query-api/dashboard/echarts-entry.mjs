// The part of Apache ECharts the dashboard draws with: graph (the state graph), Sankey (the
// positional view), line and bar charts, a pie for the linear share, a scatter for touchpoint
// influence; canvas and SVG renderers, so a chart can be exported as PNG or SVG.
import * as echarts from 'echarts/core';
import {
  GraphChart, SankeyChart, LineChart, BarChart, PieChart, ScatterChart,
} from 'echarts/charts';
import {
  TooltipComponent, GridComponent, LegendComponent, TitleComponent, DataZoomComponent,
} from 'echarts/components';
import { CanvasRenderer, SVGRenderer } from 'echarts/renderers';

echarts.use([
  GraphChart, SankeyChart, LineChart, BarChart, PieChart, ScatterChart,
  TooltipComponent, GridComponent, LegendComponent, TitleComponent, DataZoomComponent,
  CanvasRenderer, SVGRenderer,
]);

export default echarts;
